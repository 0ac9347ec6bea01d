def balanced(text):
    """True if the brackets ()[]{} in text are balanced."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack
# --- tests ---
assert balanced("a(b[c]{d})")
assert not balanced("(]")
assert not balanced("((")
assert balanced("")
