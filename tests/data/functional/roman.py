def to_roman(number):
    """Roman numeral for 1 <= number < 4000."""
    table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
             (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
    out = []
    for value, numeral in table:
        while number >= value:
            out.append(numeral)
            number -= value
    return "".join(out)
# --- tests ---
assert to_roman(1994) == "MCMXCIV"
assert to_roman(4) == "IV"
assert to_roman(3999) == "MMMCMXCIX"
