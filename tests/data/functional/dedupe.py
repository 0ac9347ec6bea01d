def dedupe(items):
    """Drop repeated items, keeping the first occurrence and the order."""
    seen = set()
    result = []
    for item in items:
        if item in seen:
            continue
        seen.add(item)
        result.append(item)
    return result
# --- tests ---
assert dedupe([3, 1, 3, 2, 1]) == [3, 1, 2]
assert dedupe("abracadabra") == ["a", "b", "r", "c", "d"]
assert dedupe([]) == []
