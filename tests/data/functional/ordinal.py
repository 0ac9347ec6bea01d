def ordinal(n):
    """English ordinal for a non-negative integer: 1 -> '1st', 12 -> '12th', 23 -> '23rd'."""
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
# --- tests ---
assert ordinal(1) == "1st"
assert ordinal(2) == "2nd"
assert ordinal(3) == "3rd"
assert ordinal(4) == "4th"
assert ordinal(11) == "11th"
assert ordinal(12) == "12th"
assert ordinal(23) == "23rd"
assert ordinal(111) == "111th"
