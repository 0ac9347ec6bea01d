"""Configuration, lowest to highest precedence:

1. `$XDG_CONFIG_HOME/dcode/config.toml` (default `~/.config/dcode/config.toml`)
2. the project: `[tool.dcode]` in `pyproject.toml`, or `.dcode.toml`, at the repository root
3. `DCODE_*` environment variables (e.g. `DCODE_THRESHOLD=0.8`, `DCODE_MODEL=/models/x`)
4. command-line flags

Project files may tune decoding but cannot choose the model, device or dtype: a cloned repository
must not decide which weights run on your machine. Unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dcode.errors import InputError

if TYPE_CHECKING:
    from dcode.diffusion.sampler import DecodeOptions

# Keys only you (user config, environment, flags) may set.
USER_ONLY_KEYS = frozenset({"model", "device", "dtype", "int8"})


@dataclass
class Settings:
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    int8: bool = False  # int8 weights on the GPU for Dream/LLaDA checkpoints
    threshold: float | None = 0.9
    tokens_per_step: int | None = None
    steps: int | None = None
    block_size: int | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    cache: bool = True
    context_budget: int = 1024  # tokens of repository context (capped by the model's length)
    low_confidence: float = 0.5  # tokens below this are marked as uncertain in the diff
    live: bool = True  # live denoising view on a terminal

    def decode_options(self, **overrides: Any) -> DecodeOptions:
        from dcode.diffusion.sampler import DecodeOptions  # imports torch: only when decoding

        opts = DecodeOptions(
            threshold=self.threshold,
            tokens_per_step=self.tokens_per_step,
            steps=self.steps,
            block_size=self.block_size,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            max_tokens=self.max_tokens,
            use_cache=self.cache,
        )
        return dataclasses.replace(opts, **overrides)


FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check a value against the field's type; strings (from the environment) are parsed."""
    kind = FIELD_TYPES[key]
    optional = "None" in kind
    if value is None or (isinstance(value, str) and value.lower() in ("none", "") and optional):
        if optional:
            return None
        raise InputError(f"{source}: {key} cannot be empty")
    try:
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            raise ValueError
        if kind.startswith("int"):
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise InputError(f"{source}: {key} must be {kind}, got {value!r}") from None


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def _apply(values: dict, table: dict, source: str, allow_user_keys: bool, warnings: list[str]) -> None:
    for key, value in table.items():
        key = key.replace("-", "_")
        if key not in FIELD_TYPES:
            raise InputError(f"{source}: unknown setting {key!r}")
        if key in USER_ONLY_KEYS and not allow_user_keys:
            warnings.append(f"{source}: ignoring {key!r}: a project cannot choose the model, device or dtype")
            continue
        values[key] = _coerce(key, value, source)


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dcode" / "config.toml"


def project_config(root: Path) -> tuple[dict, str] | None:
    dot = root / ".dcode.toml"
    if dot.is_file():
        return _read_toml(dot), str(dot)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("dcode")
        if table is not None:
            if not isinstance(table, dict):
                raise InputError(f"{pyproject}: [tool.dcode] must be a table")
            return table, f"{pyproject} [tool.dcode]"
    return None


def load_settings(
    root: Path | None, flags: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> tuple[Settings, list[str]]:
    """Merged settings and warnings (e.g. a project file that tried to pick the model)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    warnings: list[str] = []
    user = user_config_path()
    if user.is_file():
        _apply(values, _read_toml(user), str(user), True, warnings)
    if root is not None:
        project = project_config(root)
        if project is not None:
            _apply(values, project[0], project[1], False, warnings)
    for name, value in env.items():
        if name.startswith("DCODE_"):
            key = name[len("DCODE_"):].lower()
            if key in FIELD_TYPES:
                values[key] = _coerce(key, value, f"environment {name}")
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    return Settings(**values), warnings
