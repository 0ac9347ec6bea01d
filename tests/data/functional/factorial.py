def factorial(n):
    """Return n! for n >= 0."""
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result
# --- tests ---
assert factorial(0) == 1
assert factorial(1) == 1
assert factorial(5) == 120
assert factorial(10) == 3628800
