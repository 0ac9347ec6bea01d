def gcd(a, b):
    """Greatest common divisor of two non-negative integers."""
    while b:
        a, b = b, a % b
    return a


def lcm(a, b):
    """Least common multiple of two positive integers."""
    return a * b // gcd(a, b)
# --- tests ---
assert gcd(12, 18) == 6
assert gcd(7, 0) == 7
assert lcm(4, 6) == 12
assert lcm(5, 7) == 35
