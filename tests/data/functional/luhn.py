def luhn_valid(number):
    """True if the digit string (spaces allowed) passes the Luhn checksum."""
    digits = number.replace(" ", "")
    if len(digits) < 2 or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0
# --- tests ---
assert luhn_valid("4539 3195 0343 6467")
assert luhn_valid("79927398713")
assert luhn_valid("059")
assert not luhn_valid("79927398710")
assert not luhn_valid("8273 1232 7352 0569")
assert not luhn_valid("0")
assert not luhn_valid("055 444 28a")
