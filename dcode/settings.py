"""Configuration, lowest to highest precedence:

1. `$XDG_CONFIG_HOME/dcode/config.toml` (default `~/.config/dcode/config.toml`)
2. the project: `[tool.dcode]` in `pyproject.toml`, or `.dcode.toml`, at the repository root
3. `DCODE_*` environment variables (e.g. `DCODE_THRESHOLD=0.8`, `DCODE_MODEL=/models/x`)
4. command-line flags

Project files may tune decoding but cannot choose the model, device or dtype: a cloned repository
must not decide which weights run on your machine. Unknown keys are an error, and so is a value
of the wrong type or out of range (`RULES`), in plain words and exit code 2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
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
USER_ONLY_KEYS = frozenset({"model", "device", "dtype", "int8", "endpoint", "protocol", "remote_model"})
# A secret: a project file holding it is refused outright, not ignored (it should not be there).
SECRET_KEYS = frozenset({"api_key"})


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
    endpoint: str | None = None  # a model server to use instead of a local model (dcode.remote)
    protocol: str | None = None  # its protocol (dcode, llamacpp, openai, openai-chat); None: detected
    remote_model: str | None = None  # the model an OpenAI server is asked for; None: its first
    api_key: str | None = field(default=None, repr=False)  # sent as a bearer token; never printed
    timeout: float = 120.0  # seconds to wait for one reply from the server
    best_of: int | None = None  # anchored models: branches whose endings the suffix chooses from (1: greedy;
    # None: 4 for a one-line hole, 1 for a block, as measured)
    draft_tokens: int = 0  # anchored models: slots guessed ahead per pass (0: none)
    drafter: str = "context"  # what guesses them: "context" (copied from the text around the hole) or "adapter"
    threads: int | None = None  # torch's CPU threads; None: the cores free when the model loads, at most 4 (dcode.model.threads)

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
            best_of=self.best_of,
            draft_tokens=self.draft_tokens,
            drafter=self.drafter,
        )
        return dataclasses.replace(opts, **overrides)


FIELDS = frozenset(f.name for f in dataclasses.fields(Settings))
DTYPE_NAMES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")  # dcode.model.device.DTYPES
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class _Rule:
    """What one setting may hold, and how to say so in plain words."""

    kind: type  # bool, int, float or str
    words: str
    low: float | None = None
    high: float | None = None
    above_low: bool = False  # `low` itself is not allowed
    optional: bool = False  # "none" (or an empty value) stands for None
    valid: Callable[[str], bool] | None = None  # for strings

    def allows(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.above_low and value == self.low)):
            return False
        if self.high is not None and value > self.high:
            return False
        return self.valid is None or self.valid(value)


def _whole(low: int, optional: bool = False) -> _Rule:
    return _Rule(int, f"a whole number of at least {low}", low=low, optional=optional)


def _fraction(optional: bool = False) -> _Rule:
    return _Rule(float, "a number between 0 and 1", low=0, high=1, optional=optional)


RULES: dict[str, _Rule] = {
    "model": _Rule(str, "a model directory or name", optional=True),
    "device": _Rule(str, "auto, cpu, cuda or cuda:N", valid=lambda v: _DEVICE.fullmatch(v) is not None),
    "dtype": _Rule(str, "auto, float32, bfloat16 or float16", valid=lambda v: v in DTYPE_NAMES),
    "int8": _Rule(bool, "true or false"),
    "threshold": _fraction(optional=True),
    "tokens_per_step": _whole(1, optional=True),
    "steps": _whole(1, optional=True),
    "block_size": _whole(1, optional=True),
    "max_tokens": _whole(1),
    "temperature": _Rule(float, "a number of at least 0", low=0),
    "top_p": _Rule(float, "a number above 0 and at most 1", low=0, high=1, above_low=True),
    "seed": _whole(0),
    "cache": _Rule(bool, "true or false"),
    "context_budget": _whole(1),
    "best_of": _whole(1, optional=True),
    "draft_tokens": _whole(0),
    "drafter": _Rule(str, "context or adapter", valid=lambda v: v in ("context", "adapter")),
    "low_confidence": _fraction(),
    "live": _Rule(bool, "true or false"),
    "endpoint": _Rule(str, "a URL such as http://127.0.0.1:8012", optional=True,
                      valid=lambda v: v.startswith(("http://", "https://"))),
    "protocol": _Rule(str, "dcode, llamacpp, openai or openai-chat", optional=True,
                      valid=lambda v: v in ("dcode", "llamacpp", "openai", "openai-chat")),
    "remote_model": _Rule(str, "a model name the server knows", optional=True),
    "api_key": _Rule(str, "a string", optional=True),
    "timeout": _Rule(float, "a number of seconds above 0", low=0, above_low=True),
    "threads": _whole(1, optional=True),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(key: str, value: Any, source: str, text: bool = False) -> Any:
    """Check a value against its setting's rule. `text` values (the environment) are parsed from
    strings; values from TOML files and flags must already have the right type."""
    rule = RULES[key]
    if value is None or (rule.optional and isinstance(value, str) and value.lower() in ("none", "")):
        if rule.optional:
            return None
        raise InputError(f"{source}: {key} cannot be empty")
    parsed = _parse(rule, value, text)
    if parsed is None or not rule.allows(parsed):
        where = source if source.startswith("--") else f"{source}: {key}"  # a flag names itself
        raise InputError(f"{where} must be {rule.words}, got {value!r}")
    return parsed


def _parse(rule: _Rule, value: Any, text: bool) -> Any:
    """The value as the rule's type, or None when it is not one."""
    if text and isinstance(value, str) and rule.kind is not str:
        return _from_text(rule.kind, value.strip())
    if rule.kind is bool or isinstance(value, bool):  # True is an int to Python, not a number to us
        return value if rule.kind is bool and isinstance(value, bool) else None
    if rule.kind is int:
        return value if isinstance(value, int) else None
    if rule.kind is float:
        return float(value) if isinstance(value, (int, float)) else None
    return value if isinstance(value, str) else None


def _from_text(kind: type, text: str) -> Any:
    if kind is bool:
        return True if text.lower() in _TRUE else False if text.lower() in _FALSE else None
    try:
        return kind(text)
    except ValueError:
        return None


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
        if key not in FIELDS:
            raise InputError(f"{source}: unknown setting {key!r}")
        if key in SECRET_KEYS and not allow_user_keys:
            raise InputError(f"{source}: {key} does not belong in a project file (anyone with the repository "
                             "would have it); set DCODE_API_KEY or put it in your user config")
        if key in USER_ONLY_KEYS and not allow_user_keys:
            warnings.append(f"{source}: ignoring {key!r}: a project cannot choose the model, device, dtype "
                            "or model server")
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
            if key in FIELDS:
                values[key] = _coerce(key, value, f"environment {name}", text=True)
    for key, value in (flags or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, f"--{key.replace('_', '-')}")
    return Settings(**values), warnings
