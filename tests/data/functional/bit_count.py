def bit_count(n):
    """Number of 1 bits in the binary form of a non-negative integer."""
    count = 0
    while n:
        n &= n - 1
        count += 1
    return count


def bit_positions(n):
    """Positions of the 1 bits of a non-negative integer, lowest first."""
    positions = []
    index = 0
    while n:
        if n & 1:
            positions.append(index)
        n >>= 1
        index += 1
    return positions
# --- tests ---
assert bit_count(0) == 0
assert bit_count(1) == 1
assert bit_count(0b101101) == 4
assert bit_count(255) == 8
assert bit_count(2 ** 40) == 1
assert bit_positions(0) == []
assert bit_positions(0b101100) == [2, 3, 5]
assert bit_positions(1) == [0]
