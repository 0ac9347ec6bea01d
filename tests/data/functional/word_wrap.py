def wrap(text, width):
    """Greedy word wrap into lines of at most width characters (longer words get their own line)."""
    lines = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = current + " " + word if current else word
    if current:
        lines.append(current)
    return lines
# --- tests ---
assert wrap("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]
assert wrap("a b c", 3) == ["a b", "c"]
assert wrap("a b c", 5) == ["a b c"]
assert wrap("extraordinary word", 5) == ["extraordinary", "word"]
assert wrap("  spaced   out  ", 20) == ["spaced out"]
assert wrap("", 10) == []
