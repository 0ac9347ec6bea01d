def window_sums(values, size):
    """Sum of every window of `size` consecutive values, left to right."""
    if size <= 0 or size > len(values):
        return []
    total = sum(values[:size])
    sums = [total]
    for i in range(size, len(values)):
        total += values[i] - values[i - size]
        sums.append(total)
    return sums
# --- tests ---
assert window_sums([1, 2, 3, 4, 5], 2) == [3, 5, 7, 9]
assert window_sums([1, 2, 3, 4, 5], 3) == [6, 9, 12]
assert window_sums([4, -1, 7], 3) == [10]
assert window_sums([4, -1, 7], 1) == [4, -1, 7]
assert window_sums([1, 2], 3) == []
assert window_sums([1, 2], 0) == []
