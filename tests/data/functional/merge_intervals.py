def merge_intervals(intervals):
    """Merge overlapping or touching (start, end) intervals; result sorted by start."""
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
# --- tests ---
assert merge_intervals([(1, 3), (2, 6), (8, 10), (15, 18)]) == [(1, 6), (8, 10), (15, 18)]
assert merge_intervals([(5, 7), (1, 4), (4, 5)]) == [(1, 7)]
assert merge_intervals([(1, 10), (2, 3)]) == [(1, 10)]
assert merge_intervals([(3, 4)]) == [(3, 4)]
assert merge_intervals([]) == []
