def top_k_frequent(items, k):
    """The k most frequent items, most frequent first; ties keep first-seen order."""
    counts = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    ranked = sorted(counts, key=lambda item: -counts[item])
    return ranked[:k]
# --- tests ---
assert top_k_frequent([1, 1, 1, 2, 2, 3], 2) == [1, 2]
assert top_k_frequent(["b", "a", "b", "c", "a"], 2) == ["b", "a"]
assert top_k_frequent(["x", "y", "z"], 2) == ["x", "y"]
assert top_k_frequent([3, 1, 1, 3, 2, 3], 3) == [3, 1, 2]
assert top_k_frequent([5], 3) == [5]
assert top_k_frequent([], 1) == []
