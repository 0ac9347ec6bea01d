def rle_encode(text):
    """Run-length encode: 'aaab' -> [('a', 3), ('b', 1)]."""
    runs = []
    for ch in text:
        if runs and runs[-1][0] == ch:
            runs[-1] = (ch, runs[-1][1] + 1)
        else:
            runs.append((ch, 1))
    return runs


def rle_decode(runs):
    """Inverse of rle_encode."""
    return "".join(ch * count for ch, count in runs)
# --- tests ---
assert rle_encode("aaabcc") == [("a", 3), ("b", 1), ("c", 2)]
assert rle_decode(rle_encode("zzzyx")) == "zzzyx"
assert rle_encode("") == []
