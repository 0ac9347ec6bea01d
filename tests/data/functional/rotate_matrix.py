def rotate_clockwise(matrix):
    """The matrix (a list of rows) rotated a quarter turn clockwise."""
    if not matrix:
        return []
    rows, cols = len(matrix), len(matrix[0])
    rotated = []
    for c in range(cols):
        rotated.append([matrix[r][c] for r in range(rows - 1, -1, -1)])
    return rotated
# --- tests ---
assert rotate_clockwise([[1, 2], [3, 4]]) == [[3, 1], [4, 2]]
assert rotate_clockwise([[1, 2, 3], [4, 5, 6]]) == [[4, 1], [5, 2], [6, 3]]
assert rotate_clockwise([[1], [2], [3]]) == [[3, 2, 1]]
assert rotate_clockwise([[7]]) == [[7]]
assert rotate_clockwise([]) == []
m = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
assert rotate_clockwise(rotate_clockwise(rotate_clockwise(rotate_clockwise(m)))) == m
