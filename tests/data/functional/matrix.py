def transpose(matrix):
    """Transpose a list of equal-length rows."""
    if not matrix:
        return []
    return [list(row) for row in zip(*matrix)]


def matmul(a, b):
    """Product of two matrices given as lists of rows."""
    cols = transpose(b)
    return [[sum(x * y for x, y in zip(row, col)) for col in cols] for row in a]
# --- tests ---
assert transpose([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]
assert transpose([]) == []
assert matmul([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]
