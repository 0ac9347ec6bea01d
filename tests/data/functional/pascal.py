def pascal_rows(n):
    """The first n rows of Pascal's triangle."""
    rows = []
    for i in range(n):
        row = [1] * (i + 1)
        for j in range(1, i):
            row[j] = rows[i - 1][j - 1] + rows[i - 1][j]
        rows.append(row)
    return rows
# --- tests ---
assert pascal_rows(0) == []
assert pascal_rows(1) == [[1]]
assert pascal_rows(2) == [[1], [1, 1]]
assert pascal_rows(5) == [[1], [1, 1], [1, 2, 1], [1, 3, 3, 1], [1, 4, 6, 4, 1]]
assert sum(pascal_rows(11)[-1]) == 1024
