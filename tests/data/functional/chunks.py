def chunks(items, size):
    """Split items into lists of at most size elements."""
    if size <= 0:
        raise ValueError("size must be positive")
    result = []
    for start in range(0, len(items), size):
        result.append(items[start:start + size])
    return result
# --- tests ---
assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
assert chunks([], 3) == []
try:
    chunks([1], 0)
except ValueError:
    pass
else:
    raise AssertionError("expected ValueError")
