def modes(values):
    """All most common values, sorted; empty list for no values."""
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    if not counts:
        return []
    best = max(counts.values())
    return sorted(value for value, count in counts.items() if count == best)
# --- tests ---
assert modes([1, 2, 2, 3]) == [2]
assert modes([4, 1, 4, 1, 3]) == [1, 4]
assert modes([5, 3, 9]) == [3, 5, 9]
assert modes(["b", "a", "b"]) == ["b"]
assert modes([7]) == [7]
assert modes([]) == []
