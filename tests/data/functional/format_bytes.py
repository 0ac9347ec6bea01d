def format_bytes(size):
    """Human-readable size with binary units: 1536 -> '1.5 KiB'; bytes shown as '512 B'."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    value = float(size)
    index = 0
    while value >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    if index == 0:
        return f"{size} B"
    return f"{value:.1f} {units[index]}"
# --- tests ---
assert format_bytes(0) == "0 B"
assert format_bytes(512) == "512 B"
assert format_bytes(1023) == "1023 B"
assert format_bytes(1024) == "1.0 KiB"
assert format_bytes(1536) == "1.5 KiB"
assert format_bytes(5 * 1024 ** 3) == "5.0 GiB"
assert format_bytes(3 * 1024 ** 5) == "3072.0 TiB"
