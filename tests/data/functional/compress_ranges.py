def compress_ranges(numbers):
    """Sorted distinct integers as a range string: [1, 2, 3, 5] -> '1-3,5'."""
    parts = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ",".join(parts)


def expand_ranges(text):
    """Inverse of compress_ranges: '1-3,5' -> [1, 2, 3, 5]."""
    numbers = []
    for part in text.split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers
# --- tests ---
assert compress_ranges([1, 2, 3, 5]) == "1-3,5"
assert compress_ranges([0, 2, 4, 5]) == "0,2,4-5"
assert compress_ranges([7]) == "7"
assert compress_ranges([]) == ""
assert expand_ranges("1-3,5") == [1, 2, 3, 5]
assert expand_ranges("10,12-13") == [10, 12, 13]
assert expand_ranges("") == []
assert expand_ranges(compress_ranges([3, 4, 5, 9, 10, 20])) == [3, 4, 5, 9, 10, 20]
