def zip_fill(a, b, fill=None):
    """Pairs from a and b, padding the shorter one with fill."""
    length = max(len(a), len(b))
    pairs = []
    for i in range(length):
        left = a[i] if i < len(a) else fill
        right = b[i] if i < len(b) else fill
        pairs.append((left, right))
    return pairs
# --- tests ---
assert zip_fill([1, 2, 3], ["a"]) == [(1, "a"), (2, None), (3, None)]
assert zip_fill([1], [4, 5], fill=0) == [(1, 4), (0, 5)]
assert zip_fill("ab", "xy") == [("a", "x"), ("b", "y")]
assert zip_fill([], [], fill=9) == []
assert zip_fill([], [1], fill="-") == [("-", 1)]
