def title_case(text, minor=("a", "an", "and", "in", "of", "on", "or", "the", "to")):
    """Capitalize each word except minor words, but always the first and last word."""
    words = text.lower().split()
    out = []
    for i, word in enumerate(words):
        if i == 0 or i == len(words) - 1 or word not in minor:
            word = word[0].upper() + word[1:]
        out.append(word)
    return " ".join(out)
# --- tests ---
assert title_case("the lord of the rings") == "The Lord of the Rings"
assert title_case("WAR AND PEACE") == "War and Peace"
assert title_case("a tale of two cities") == "A Tale of Two Cities"
assert title_case("what it is made of") == "What It Is Made Of"
assert title_case("the") == "The"
assert title_case("") == ""
assert title_case("x in y", minor=()) == "X In Y"
