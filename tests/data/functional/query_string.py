def parse_query(query):
    """Parse 'a=1&b=2&a=3' into {'a': ['1', '3'], 'b': ['2']}; a bare key maps to ''."""
    params = {}
    for pair in query.lstrip("?").split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params.setdefault(key, []).append(value)
    return params


def build_query(params):
    """Inverse of parse_query, keys in insertion order."""
    pairs = []
    for key, values in params.items():
        for value in values:
            pairs.append(key + "=" + value)
    return "&".join(pairs)
# --- tests ---
assert parse_query("a=1&b=2&a=3") == {"a": ["1", "3"], "b": ["2"]}
assert parse_query("?flag&x=") == {"flag": [""], "x": [""]}
assert parse_query("k=a=b") == {"k": ["a=b"]}
assert parse_query("") == {}
assert parse_query("a=1&&b=2") == {"a": ["1"], "b": ["2"]}
assert build_query({"a": ["1", "3"], "b": ["2"]}) == "a=1&a=3&b=2"
assert build_query({}) == ""
