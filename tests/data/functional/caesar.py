def caesar(text, shift):
    """Shift letters by shift places, keeping case; other characters unchanged."""
    out = []
    for ch in text:
        if ch.isupper():
            out.append(chr((ord(ch) - ord("A") + shift) % 26 + ord("A")))
        elif ch.islower():
            out.append(chr((ord(ch) - ord("a") + shift) % 26 + ord("a")))
        else:
            out.append(ch)
    return "".join(out)
# --- tests ---
assert caesar("abc", 1) == "bcd"
assert caesar("Hello, World!", 3) == "Khoor, Zruog!"
assert caesar(caesar("xyz", 5), -5) == "xyz"
