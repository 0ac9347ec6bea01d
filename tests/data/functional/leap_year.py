def is_leap(year):
    """True if year is a leap year in the Gregorian calendar."""
    if year % 400 == 0:
        return True
    if year % 100 == 0:
        return False
    return year % 4 == 0


def days_in_month(year, month):
    """Number of days in the given month (1-12) of the given year."""
    if month == 2:
        return 29 if is_leap(year) else 28
    if month in (4, 6, 9, 11):
        return 30
    return 31
# --- tests ---
assert is_leap(2024)
assert is_leap(2000)
assert not is_leap(1900)
assert not is_leap(2023)
assert days_in_month(2024, 2) == 29
assert days_in_month(2100, 2) == 28
assert days_in_month(2023, 4) == 30
assert days_in_month(2023, 12) == 31
