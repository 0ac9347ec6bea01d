def is_valid_ipv4(text):
    """True for a dotted-quad IPv4 address: four decimal parts 0-255, no leading zeros."""
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or int(part) > 255:
            return False
        if len(part) > 1 and part[0] == "0":
            return False
    return True
# --- tests ---
assert is_valid_ipv4("192.168.0.1")
assert is_valid_ipv4("0.0.0.0")
assert is_valid_ipv4("255.255.255.255")
assert not is_valid_ipv4("256.1.1.1")
assert not is_valid_ipv4("1.2.3")
assert not is_valid_ipv4("1.2.3.4.5")
assert not is_valid_ipv4("01.2.3.4")
assert not is_valid_ipv4("1.-2.3.4")
assert not is_valid_ipv4("1..3.4")
