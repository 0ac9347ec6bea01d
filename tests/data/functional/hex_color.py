def hex_to_rgb(color):
    """'#ff8800' or the short form '#f80' -> (255, 136, 0); None if malformed."""
    digits = color.lstrip("#").lower()
    if len(digits) == 3:
        digits = "".join(ch * 2 for ch in digits)
    if len(digits) != 6 or any(ch not in "0123456789abcdef" for ch in digits):
        return None
    return tuple(int(digits[i:i + 2], 16) for i in range(0, 6, 2))


def rgb_to_hex(red, green, blue):
    """(255, 136, 0) -> '#ff8800'; each channel clamped to 0-255."""
    channels = []
    for value in (red, green, blue):
        channels.append(max(0, min(255, value)))
    return "#" + "".join(f"{value:02x}" for value in channels)
# --- tests ---
assert hex_to_rgb("#ff8800") == (255, 136, 0)
assert hex_to_rgb("#f80") == (255, 136, 0)
assert hex_to_rgb("000000") == (0, 0, 0)
assert hex_to_rgb("#ABCDEF") == (171, 205, 239)
assert hex_to_rgb("#12345") is None
assert hex_to_rgb("#ggg") is None
assert rgb_to_hex(255, 136, 0) == "#ff8800"
assert rgb_to_hex(1, 2, 3) == "#010203"
assert rgb_to_hex(300, -5, 16) == "#ff0010"
