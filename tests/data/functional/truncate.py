def truncate(text, width, ellipsis="..."):
    """Shorten text to at most width characters, cutting at a word boundary when possible."""
    if len(text) <= width:
        return text
    budget = width - len(ellipsis)
    cut = text[:budget + 1]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    else:
        cut = cut[:budget]
    return cut.rstrip() + ellipsis
# --- tests ---
assert truncate("The quick brown fox", 12) == "The quick..."
assert truncate("The quick brown fox", 13) == "The quick..."
assert truncate("The quick brown fox", 19) == "The quick brown fox"
assert truncate("Supercalifragilistic", 10) == "Superca..."
assert truncate("a b c d", 5) == "a..."
assert truncate("one two  three", 10, ellipsis="~") == "one two~"
assert truncate("", 3) == ""
