def reverse_words(sentence):
    """Reverse the order of the words in a sentence."""
    words = sentence.split()
    words.reverse()
    return " ".join(words)
# --- tests ---
assert reverse_words("hello world") == "world hello"
assert reverse_words("  a  b c ") == "c b a"
assert reverse_words("") == ""
