def clamp(value, low, high):
    """value limited to the range [low, high]."""
    if low > high:
        raise ValueError("low must not exceed high")
    if value < low:
        return low
    if value > high:
        return high
    return value
# --- tests ---
assert clamp(5, 0, 10) == 5
assert clamp(-3, 0, 10) == 0
assert clamp(42, 0, 10) == 10
try:
    clamp(1, 2, 1)
except ValueError:
    pass
else:
    raise AssertionError("expected ValueError")
