def invert(mapping):
    """Map each value to the list of keys that had it, keys in original order."""
    inverted = {}
    for key, value in mapping.items():
        if value not in inverted:
            inverted[value] = []
        inverted[value].append(key)
    return inverted
# --- tests ---
assert invert({"a": 1, "b": 2, "c": 1}) == {1: ["a", "c"], 2: ["b"]}
assert invert({"x": "y"}) == {"y": ["x"]}
assert invert({1: 0, 2: 0, 3: 0}) == {0: [1, 2, 3]}
assert invert({}) == {}
