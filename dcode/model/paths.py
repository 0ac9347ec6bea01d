"""Where models live on disk: the shipped weights, dcode's cache, pulled checkpoints, and how a
`--model` argument resolves to a directory. Plain paths only: no torch, no huggingface_hub."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dcode.errors import ModelError

DEFAULT_MODEL_NAME = "dcode-mini"  # the default that needs nothing downloaded
SMALL_MODEL_NAME = "dcode-small"  # the default whenever its base has been pulled
PULL_RECORD = "dcode-pull.json"
# A pulled model's name becomes a directory of the cache: no separators, no `..`.
PULL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class KnownModel:
    """A short name `dcode pull` accepts; repository and license as its model card gives them."""

    repo: str
    license: str
    parameters: str


KNOWN: dict[str, KnownModel] = {
    "dream-coder": KnownModel("Dream-org/Dream-Coder-v0-Instruct-7B", "Apache-2.0", "7.6B"),
    "diffucoder": KnownModel("apple/DiffuCoder-7B-Instruct", "apple-amlr", "7.6B"),
    "diffucoder-cpgrpo": KnownModel("apple/DiffuCoder-7B-cpGRPO", "apple-amlr", "7.6B"),
    "dreamon": KnownModel("Dream-org/DreamOn-v0-7B", "Apache-2.0", "7.6B"),
    "llada": KnownModel("GSAI-ML/LLaDA-8B-Instruct", "MIT", "8.0B"),
    "open-dcoder": KnownModel("fredzzp/open-dcoder-0.5B", "Apache-2.0", "0.5B"),
}


def shipped_weights_root() -> Path | None:
    """`weights/` of a checkout, or the `dcode/_weights` package data of an installed wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_weights", package.parent / "weights"):
        if candidate.is_dir():
            return candidate
    return None


def shipped_model(name: str) -> Path | None:
    """The shipped model called `name` (e.g. dcode-small), or None."""
    root = shipped_weights_root()
    if root is not None and name and "/" not in name and (root / name).is_dir():
        return root / name
    return None


def base_file(package: str, version: str, member: str) -> Path:
    """Where `dcode pull` extracts a base (whether or not it is there yet)."""
    return base_cache_dir() / "bases" / f"{package}-{version}" / member.rsplit("/", 1)[-1]


def default_model_name() -> str:
    """dcode-small when its base is in the cache (after `make demo` or `dcode pull dcode-small`),
    else dcode-mini, which needs nothing downloaded."""
    small = shipped_model(SMALL_MODEL_NAME)
    try:
        manifest = json.loads((small / "base.json").read_text(encoding="utf-8")) if small else None
    except (OSError, ValueError):
        manifest = None
    if manifest and base_file(manifest["package"], manifest["version"], manifest["member"]).is_file():
        return SMALL_MODEL_NAME
    return DEFAULT_MODEL_NAME


def default_model_dir() -> Path:
    root = shipped_weights_root()
    name = default_model_name()
    if name != DEFAULT_MODEL_NAME and root is not None:
        return root / name
    if root is None or not (root / DEFAULT_MODEL_NAME / "config.json").is_file():
        raise ModelError(
            f"the shipped model {DEFAULT_MODEL_NAME} was not found (looked in weights/ and dcode/_weights); "
            "pass --model PATH or set DCODE_MODEL"
        )
    return root / DEFAULT_MODEL_NAME


def base_cache_dir() -> Path:
    """`$DCODE_CACHE_DIR`, else `$XDG_CACHE_HOME/dcode`, else `~/.cache/dcode`."""
    explicit = os.environ.get("DCODE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dcode"


def models_dir() -> Path:
    """Where pulled checkpoints live: `<dcode cache>/models`."""
    return base_cache_dir() / "models"


def pulled_dir(name: str) -> Path | None:
    """The directory of a completed pull called `name`, or None."""
    if not PULL_NAME.fullmatch(name):
        return None
    directory = models_dir() / name
    return directory if (directory / PULL_RECORD).is_file() else None


def not_pulled_hint(name: str) -> str | None:
    """The one-line fix for `--model NAME` naming a short name that is not pulled yet."""
    if name in KNOWN and pulled_dir(name) is None:
        return f"{name} is not pulled yet: run `dcode pull {name}` ({KNOWN[name].repo})"
    return None


def resolve_model_dir(path: str | os.PathLike | None) -> Path:
    """An explicit path, else $DCODE_MODEL, else the shipped default. A plain name is a shipped
    model (dcode-small) or one `dcode pull` fetched (dream-coder, or a repository's name)."""
    if path is None:
        path = os.environ.get("DCODE_MODEL") or None
    if path is None:
        return default_model_dir()
    model_dir = Path(path).expanduser()
    if not model_dir.is_dir():
        name = str(path)
        found = shipped_model(name) or pulled_dir(name)
        if found is not None:
            return found
        raise ModelError(not_pulled_hint(name) or f"{model_dir}: model directory not found")
    return model_dir
