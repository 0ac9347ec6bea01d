"""The server's settings: dcode's usual ones (user config, the workspace's project file, `DCODE_*`
variables, the command line's flags), then the editor's, sent in `initializationOptions` and
`workspace/didChangeConfiguration` with the config file's keys (`model`, `endpoint`, `threads`,
`context_budget`, `max_tokens`, ...), as flat keys or under a `dcode` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcode.errors import InputError
from dcode.settings import FIELDS, Settings, load_settings

# Settings that pick the model or how it runs: changing one loads it again (on the next request).
MODEL_KEYS = ("model", "device", "dtype", "int8", "endpoint", "protocol", "remote_model", "api_key", "timeout",
              "threads")


def editor_settings(value: Any, source: str) -> dict[str, Any]:
    """The dcode settings in what an editor sent: a table of them, or a table with a `dcode`
    section (VS Code and nvim-lspconfig send every section). Unknown keys are refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{source}: expected an object of dcode settings, got {type(value).__name__}")
    table = value.get("dcode", value)
    if not isinstance(table, dict):
        raise InputError(f"{source}: the dcode section must be an object of settings")
    found: dict[str, Any] = {}
    for key, item in table.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise InputError(f"{source}: unknown setting {key!r}")
        found[name] = item
    return found


@dataclass
class ServerConfig:
    """The command line's flags, the workspace root (its project file) and the editor's settings,
    which win over the flags; `load` merges them with everything below as `dcode` does."""

    flags: dict[str, Any]
    root: Path | None = None
    editor: dict[str, Any] = field(default_factory=dict)

    def load(self) -> tuple[Settings, list[str]]:
        return load_settings(self.root, {**self.flags, **self.editor})

    def update(self, value: Any, source: str) -> tuple[Settings, list[str]]:
        """Take the editor's new settings when they are valid; else keep the old ones and raise."""
        editor = editor_settings(value, source)
        settings, warnings = load_settings(self.root, {**self.flags, **editor})
        self.editor = editor
        return settings, warnings


def same_model(before: Settings, after: Settings) -> bool:
    return all(getattr(before, key) == getattr(after, key) for key in MODEL_KEYS)
