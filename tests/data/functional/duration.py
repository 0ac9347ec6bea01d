def parse_duration(text):
    """Seconds in a duration such as '1h30m' or '2m5s' (units h, m, s)."""
    units = {"h": 3600, "m": 60, "s": 1}
    total = 0
    number = ""
    for ch in text:
        if ch.isdigit():
            number += ch
        else:
            total += int(number) * units[ch]
            number = ""
    return total


def format_duration(seconds):
    """Inverse of parse_duration, omitting zero units: 3725 -> '1h2m5s', 0 -> '0s'."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"
# --- tests ---
assert parse_duration("1h30m") == 5400
assert parse_duration("2m5s") == 125
assert parse_duration("45s") == 45
assert parse_duration("10h") == 36000
assert parse_duration("") == 0
assert format_duration(3725) == "1h2m5s"
assert format_duration(3600) == "1h"
assert format_duration(61) == "1m1s"
assert format_duration(0) == "0s"
