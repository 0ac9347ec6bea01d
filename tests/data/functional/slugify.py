def slugify(title):
    """Lower-case words of title joined by hyphens; other characters dropped."""
    words = []
    current = ""
    for ch in title.lower():
        if ch.isalnum():
            current += ch
        elif current:
            words.append(current)
            current = ""
    if current:
        words.append(current)
    return "-".join(words)
# --- tests ---
assert slugify("Hello, World!") == "hello-world"
assert slugify("  Many   spaces here ") == "many-spaces-here"
assert slugify("") == ""
