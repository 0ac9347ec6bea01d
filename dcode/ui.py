"""What the user sees: unified diffs with uncertain tokens marked, and the live denoising view.

Human output goes to stderr; results (diffs, JSON) go to stdout. Colour and the live view are
used only on a terminal, and never with NO_COLOR set or TERM=dumb.
"""

from __future__ import annotations

import difflib
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text

from dcode.errors import InputError

if TYPE_CHECKING:  # both import torch; the CLI's start-up should not
    from dcode.diffusion.sampler import HoleState
    from dcode.model.tokenizer import Tokenizer

MASK_GLYPH = "░"
UNCERTAIN_STYLE = "bold black on yellow"


def plain_terminal() -> bool:
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


def stderr_console() -> Console:
    plain = plain_terminal()
    return Console(stderr=True, no_color=plain, force_terminal=None if not plain else False, highlight=False,
                   soft_wrap=True)


def stdout_console() -> Console:
    plain = plain_terminal()
    return Console(no_color=plain, force_terminal=None if not plain else False, highlight=False, soft_wrap=True)


def live_enabled(requested: bool) -> bool:
    return requested and sys.stderr.isatty() and not plain_terminal()


def unified_diff(rel_path: str, old: str, new: str) -> str:
    """A `git apply`-compatible unified diff (with the no-newline-at-end marker)."""
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    out: list[str] = []
    for line in difflib.unified_diff(old_lines, new_lines, f"a/{rel_path}", f"b/{rel_path}", n=3):
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def edit_text(text: str, suffix: str) -> str:
    """`text` as the user leaves it in their editor ($VISUAL, else $EDITOR, else vi), opened on a
    temporary file named with `suffix` so the editor knows the language."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="dcode-edit-") as tmp:
        path = Path(tmp) / f"proposal{suffix}"
        path.write_bytes(text.encode("utf-8"))
        try:
            done = subprocess.run([*shlex.split(editor), str(path)])
        except OSError as exc:
            raise InputError(f"cannot run the editor {editor!r}: {exc.strerror or exc}") from None
        if done.returncode != 0:
            raise InputError(f"the editor {editor!r} exited with status {done.returncode}; nothing was changed")
        try:
            return path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("the edited text is not UTF-8; nothing was changed") from None


def uncertain_spans(tokenizer: Tokenizer, ids: list[int], confidences: list[float], threshold: float) -> list[tuple[int, int]]:
    """Character spans (in the decoded fill) of tokens committed with confidence < threshold."""
    spans = tokenizer.char_spans(ids)
    return [span for span, c in zip(spans, confidences) if c < threshold and span[1] > span[0]]


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1)
    return line, col


def diff_highlights(diff: str, new_text: str, new_spans: Iterable[tuple[int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Map character spans of the new file onto (line, col) ranges of the diff's `+` lines."""
    wanted: dict[int, list[tuple[int, int]]] = {}
    for start, end in new_spans:
        (l1, c1), (l2, c2) = _line_col(new_text, start), _line_col(new_text, end)
        for line in range(l1, l2 + 1):
            a = c1 if line == l1 else 0
            b = c2 if line == l2 else 10**6
            if b > a:
                wanted.setdefault(line, []).append((a, b))
    ranges = []
    new_line = 0
    for i, row in enumerate(diff.splitlines(), 1):
        if row.startswith("@@"):
            new_line = int(row.split("+")[1].split(",")[0].split(" ")[0]) - 1
        elif row.startswith("+") and not row.startswith("+++"):
            new_line += 1
            for a, b in wanted.get(new_line, []):
                ranges.append(((i, a + 1), (i, min(b + 1, len(row)))))
        elif row.startswith(" "):
            new_line += 1
    return ranges


def render_diff(console: Console, diff: str, highlights: list) -> None:
    if not diff:
        console.print("(no change)")
        return
    if console.no_color or not console.is_terminal:
        console.print(diff, end="", markup=False, highlight=False)
        return
    syntax = Syntax(diff, "diff", theme="ansi_dark", background_color="default", word_wrap=False)
    for start, end in highlights:
        syntax.stylize_range(UNCERTAIN_STYLE, start, end)
    console.print(syntax)


def hole_text(tokenizer: Tokenizer, state: HoleState, low: float) -> Text:
    """The hole as it is being denoised: masks as ░, uncertain tokens highlighted."""
    text = Text()
    pending = b""
    for token, conf in zip(state.tokens, state.confidences):
        if token == state.mask_id:
            if pending:
                text.append(pending.decode("utf-8", errors="replace"))
                pending = b""
            text.append(MASK_GLYPH, style="dim")
            continue
        if token in tokenizer.stop_ids:
            continue
        piece = tokenizer.token_bytes(token)
        if conf < low:
            text.append((pending + piece).decode("utf-8", errors="replace"), style=UNCERTAIN_STYLE)
            pending = b""
        else:
            pending += piece
    if pending:
        text.append(pending.decode("utf-8", errors="replace"))
    return text


@contextmanager
def live_view(console: Console, tokenizer: Tokenizer, enabled: bool, low: float, title: str):
    """Yields an `update(state)` callback; renders the hole live when enabled."""
    if not enabled:
        yield lambda state: None
        return
    with Live(console=console, refresh_per_second=20, transient=True) as live:

        def update(state: HoleState) -> None:
            stats = state.stats
            caption = f"pass {stats.forward_passes} · {len(state.tokens) - state.masked}/{len(state.tokens)} slots"
            live.update(Panel(Group(hole_text(tokenizer, state, low)), title=title, subtitle=caption))

        yield update
