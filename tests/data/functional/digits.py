def digit_sum(n):
    """Sum of the decimal digits of a non-negative integer."""
    total = 0
    while n > 0:
        total += n % 10
        n //= 10
    return total


def is_armstrong(n):
    """True if n equals the sum of its digits each raised to the number of digits."""
    digits = [int(d) for d in str(n)]
    power = len(digits)
    return n == sum(d ** power for d in digits)
# --- tests ---
assert digit_sum(0) == 0
assert digit_sum(12345) == 15
assert is_armstrong(153)
assert not is_armstrong(154)
