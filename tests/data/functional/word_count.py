def word_count(text):
    """Map each lower-cased word to the number of times it occurs."""
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,!?")
        if not word:
            continue
        counts[word] = counts.get(word, 0) + 1
    return counts
# --- tests ---
assert word_count("The cat and the hat.") == {"the": 2, "cat": 1, "and": 1, "hat": 1}
assert word_count("") == {}
assert word_count("Go, go, GO!") == {"go": 3}
