def fibonacci(n):
    """The first n Fibonacci numbers."""
    numbers = []
    a, b = 0, 1
    for _ in range(n):
        numbers.append(a)
        a, b = b, a + b
    return numbers
# --- tests ---
assert fibonacci(0) == []
assert fibonacci(1) == [0]
assert fibonacci(8) == [0, 1, 1, 2, 3, 5, 8, 13]
