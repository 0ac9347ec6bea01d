def binary_search(items, target):
    """Index of target in the sorted list items, or -1."""
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
# --- tests ---
data = [1, 3, 5, 7, 9, 11]
assert all(binary_search(data, x) == i for i, x in enumerate(data))
assert binary_search(data, 4) == -1
assert binary_search([], 1) == -1
