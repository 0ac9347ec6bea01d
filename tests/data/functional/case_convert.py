def camel_to_snake(name):
    """'parseHttpRequest' -> 'parse_http_request'."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i > 0:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def snake_to_camel(name):
    """'parse_http_request' -> 'parseHttpRequest'; empty parts are dropped."""
    parts = [part for part in name.split("_") if part]
    if not parts:
        return ""
    return parts[0].lower() + "".join(part.capitalize() for part in parts[1:])
# --- tests ---
assert camel_to_snake("parseHttpRequest") == "parse_http_request"
assert camel_to_snake("Name") == "name"
assert camel_to_snake("x") == "x"
assert snake_to_camel("parse_http_request") == "parseHttpRequest"
assert snake_to_camel("_private__name_") == "privateName"
assert snake_to_camel("") == ""
assert snake_to_camel(camel_to_snake("getUserId")) == "getUserId"
