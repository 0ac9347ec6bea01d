def differences(values):
    """Differences between consecutive values: [1, 4, 9] -> [3, 5]."""
    diffs = []
    for i in range(1, len(values)):
        diffs.append(values[i] - values[i - 1])
    return diffs


def integrate(first, diffs):
    """Rebuild the values from the first value and the consecutive differences."""
    values = [first]
    for diff in diffs:
        values.append(values[-1] + diff)
    return values
# --- tests ---
assert differences([1, 4, 9, 16]) == [3, 5, 7]
assert differences([5, 3, 3]) == [-2, 0]
assert differences([7]) == []
assert differences([]) == []
assert integrate(1, [3, 5, 7]) == [1, 4, 9, 16]
assert integrate(2, []) == [2]
assert integrate(10, differences([10, 8, 11, 11])) == [10, 8, 11, 11]
