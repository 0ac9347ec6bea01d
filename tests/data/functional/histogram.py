def histogram(values, bins, low, high):
    """Counts of values in `bins` equal-width bins over [low, high); others ignored."""
    counts = [0] * bins
    width = (high - low) / bins
    for value in values:
        if low <= value < high:
            index = int((value - low) / width)
            counts[index] += 1
    return counts
# --- tests ---
assert histogram([0, 1, 2, 3, 9.9, 10, -1], 5, 0, 10) == [2, 2, 0, 0, 1]
assert histogram([], 3, 0, 1) == [0, 0, 0]
