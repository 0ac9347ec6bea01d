def is_palindrome(text):
    """True if text reads the same backwards, ignoring case and non-letters."""
    letters = [ch.lower() for ch in text if ch.isalnum()]
    return letters == letters[::-1]


def longest_palindrome_prefix(text):
    """The longest prefix of text that is a palindrome."""
    for end in range(len(text), 0, -1):
        if text[:end] == text[:end][::-1]:
            return text[:end]
    return ""
# --- tests ---
assert is_palindrome("A man, a plan, a canal: Panama")
assert not is_palindrome("hello")
assert longest_palindrome_prefix("abacus") == "aba"
assert longest_palindrome_prefix("") == ""
