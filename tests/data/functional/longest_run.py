def longest_run(values):
    """(value, length) of the longest run of equal consecutive values; first one wins ties."""
    best_value, best_length = None, 0
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        if j - i > best_length:
            best_value, best_length = values[i], j - i
        i = j
    return best_value, best_length
# --- tests ---
assert longest_run([1, 1, 2, 2, 2, 1]) == (2, 3)
assert longest_run("aabbbcccc") == ("c", 4)
assert longest_run([3, 3, 4, 4]) == (3, 2)
assert longest_run([5, 6, 7]) == (5, 1)
assert longest_run([9]) == (9, 1)
assert longest_run([]) == (None, 0)
