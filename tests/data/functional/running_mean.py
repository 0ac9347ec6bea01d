def running_mean(values):
    """The mean of the first k values, for every k."""
    means = []
    total = 0.0
    for count, value in enumerate(values, start=1):
        total += value
        means.append(total / count)
    return means
# --- tests ---
assert running_mean([2, 4, 6]) == [2.0, 3.0, 4.0]
assert running_mean([]) == []
