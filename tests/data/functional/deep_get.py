def deep_get(data, path, default=None):
    """Value at a dotted path such as 'a.b.c' in nested dicts, or default if missing."""
    current = data
    for key in path.split("."):
        if not isinstance(current, dict) or key not in current:
            return default
        current = current[key]
    return current


def deep_set(data, path, value):
    """Set the value at a dotted path, creating intermediate dicts as needed."""
    keys = path.split(".")
    current = data
    for key in keys[:-1]:
        current = current.setdefault(key, {})
    current[keys[-1]] = value
# --- tests ---
config = {"db": {"host": "localhost", "port": 5432}, "debug": False}
assert deep_get(config, "db.port") == 5432
assert deep_get(config, "debug") is False
assert deep_get(config, "db.user", "root") == "root"
assert deep_get(config, "db.host.name") is None
assert deep_get(config, "cache.size", 0) == 0
deep_set(config, "cache.size", 64)
assert config["cache"] == {"size": 64}
deep_set(config, "db.port", 5433)
assert config["db"] == {"host": "localhost", "port": 5433}
