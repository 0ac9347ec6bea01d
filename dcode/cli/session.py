"""What every terminal command (and the shell) starts from: the repository, the settings, the
model, and driving a proposal stream with the live view.

Callers reach `load` and `interactive` through this module (`session.load(...)`) rather than
importing the names, so that there is one place to substitute them (tests load scripted models
and pretend to be on a terminal).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dcode.cli.render import err_console, live_enabled, live_view
from dcode.errors import InputError


def parse_line_range(text: str, label: str = "--lines") -> tuple[int, int]:
    try:
        a, _, b = text.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise InputError(f"{label} {text!r}: expected A-B, e.g. 3-5") from None
    if first < 1 or last < first:
        raise InputError(f"{label} {text!r}: expected 1 <= A <= B")
    return first, last


def shown_path(path: Path, root: Path) -> str:
    """A path as diffs and messages show it: relative to the repository when inside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def project_root() -> Path:
    from dcode.context.index import find_repo_root

    return find_repo_root(Path.cwd())


def settings_for(flags: dict[str, Any]):
    from dcode.settings import load_settings

    settings, warnings = load_settings(project_root(), flags)
    for warning in warnings:
        err_console.print(f"dcode: warning: {warning}", markup=False)
    if settings.endpoint:
        from dcode.remote.model import model_flag_names_remote

        model_flag_names_remote(settings, flags)
    return settings


def check_model(settings) -> None:
    """Refuse a model name or directory that does not exist before anything heavy loads (torch
    takes seconds to import; a typo should not)."""
    if not settings.endpoint:
        from dcode.model.paths import resolve_model_dir

        resolve_model_dir(settings.model)


def check_target(spec: str) -> None:
    """Refuse a target that cannot be filled (no such file, binary, too large, not text in its
    encoding, a line or symbol it does not have) before anything heavy loads. Reading and
    parsing a file takes milliseconds; the model is found and loaded after."""
    from dcode.edit.targets import resolve_target

    resolve_target(spec)


def load(settings):
    """The model: on the configured server (`endpoint`), else loaded here on the threads the
    settings ask for (else the cores free now), with a spinner on stderr (loading can take
    seconds)."""
    if settings.endpoint:
        from dcode.remote.model import connect

        with err_console.status(f"connecting to {settings.endpoint}…", spinner="dots"):
            return connect(settings)
    check_model(settings)
    from dcode.model.loader import load_model
    from dcode.model.threads import use_threads

    with err_console.status("loading model…", spinner="dots"):
        use_threads(settings.threads)
        return load_model(settings.model, device=settings.device, dtype=settings.dtype, int8=settings.int8)


def load_local(settings, command: str):
    """The model loaded here, for what only a local model does (decoding with its own template,
    timing its passes): refused with an endpoint rather than quietly run on another model."""
    if settings.endpoint:
        raise InputError(f"`dcode {command}` runs a local model; unset the endpoint (--endpoint, DCODE_ENDPOINT) "
                         "to use it")
    return load(settings)


def index_progress() -> Callable[[int, int], None]:
    """A progress callback for indexing; shows a bar only once there is real work."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state and total > 50 and err_console.is_terminal:
            from rich.progress import Progress

            state["bar"] = Progress(console=err_console, transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task("indexing", total=total)
        if "bar" in state:
            state["bar"].update(state["task"], completed=done, total=total)
            if done >= total:
                state["bar"].stop()

    return update


def drive(stream: Iterator, tokenizer, settings, live: bool, title: str):
    """Run a proposal stream, rendering the hole live; returns the final proposal."""
    from dcode.diffusion.sampler import HoleState

    result = None
    with live_view(err_console, tokenizer, live_enabled(live and settings.live), settings.low_confidence, title) as update:
        for item in stream:
            if isinstance(item, HoleState):
                update(item)
            else:
                result = item
    return result
