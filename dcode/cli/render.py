"""What the user sees: unified diffs with uncertain tokens marked, the live denoising view, and a
proposal's report.

Human output goes to stderr; results (diffs, JSON) go to stdout. Colour and the live view are
used only on a terminal, and never with NO_COLOR set or TERM=dumb.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.text import Text

from dcode.model.console import plain_terminal, stderr_console, stdout_console

# Every start imports this module (an error is printed through `err_console`), so what only a diff
# or the live view needs (pygments, Rich's Live and Panel) is imported where it is used.

if TYPE_CHECKING:  # all three import torch; the CLI's start-up should not
    from dcode.diffusion.sampler import HoleState
    from dcode.edit.proposal import Proposal
    from dcode.model.tokenizer import Tokenizer

MASK_GLYPH = "░"
UNCERTAIN_STYLE = "bold black on yellow"

err_console = stderr_console()


def say(message: str) -> None:
    err_console.print(message, markup=False, highlight=False)


def live_enabled(requested: bool) -> bool:
    return requested and sys.stderr.isatty() and not plain_terminal()


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
    from rich.syntax import Syntax

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
def keys_not_echoed(console: Console):
    """While a live view is drawn, the terminal echoes no keys and keeps what was written when
    Ctrl-C is pressed: an echoed `^C` after the panel's last column wraps to a new line, and a
    flushed half-written frame leaves the cursor where Rich does not expect it; either way the
    clean-up that follows misses the panel's top border."""
    try:
        import termios
    except ImportError:  # not a POSIX terminal: nothing to quieten
        yield
        return
    try:
        fd = console.file.fileno()
        saved = termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):  # not a terminal after all
        yield
        return
    quiet = list(saved)
    quiet[3] = (quiet[3] & ~(termios.ECHO | termios.ECHOCTL)) | termios.NOFLSH
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


@contextmanager
def live_screen(console: Console):
    """A transient Rich `Live` on `console` that leaves the terminal clean, Ctrl-C included."""
    from rich.live import Live

    with keys_not_echoed(console), Live(console=console, refresh_per_second=20, transient=True) as live:
        yield live


@contextmanager
def live_view(console: Console, tokenizer: Tokenizer, enabled: bool, low: float, title: str):
    """Yields an `update(state)` callback; renders the hole live when enabled."""
    if not enabled:
        yield lambda state: None
        return
    from rich.panel import Panel

    with live_screen(console) as live:

        def update(state: HoleState) -> None:
            stats = state.stats
            caption = f"pass {stats.forward_passes} · {len(state.tokens) - state.masked}/{len(state.tokens)} slots"
            live.update(Panel(Group(hole_text(tokenizer, state, low)), title=title, subtitle=caption))

        yield update


def proposal_view(proposal: Proposal, tokenizer: Tokenizer, settings) -> tuple[str, list, list[int]]:
    """(diff, highlight ranges, uncertain line numbers in the new file)."""
    from dcode.edit.change import numbered_diff
    from dcode.edit.files import newline_style

    text = proposal.original_text()
    new = proposal.new_text(text)
    diff = numbered_diff([(proposal.rel_path, text, new)])
    spans = uncertain_spans(tokenizer, proposal.token_ids, proposal.confidences, settings.low_confidence)
    # Spans are offsets in the raw fill; the insertion may differ only by newline style, so map
    # through the start of the hole (CRLF files get an offset per preceding newline).
    crlf = newline_style(text) == "\r\n"
    shifted = []
    for a, b in spans:
        extra_a = proposal.fill.count("\n", 0, a) if crlf else 0
        extra_b = proposal.fill.count("\n", 0, b) if crlf else 0
        shifted.append((proposal.start + a + extra_a, proposal.start + b + extra_b))
    highlights = diff_highlights(diff, new, shifted)
    lines = sorted({new.count("\n", 0, a) + 1 for a, _ in shifted})
    return diff, highlights, lines


def result_json(proposal: Proposal, diff: str, uncertain: list[int], applied: bool) -> dict:
    from dcode.edit.change import hunks_in
    from dcode.edit.proposal import line_count

    return {
        "path": proposal.rel_path,
        "kind": proposal.kind,
        "fill": proposal.fill,
        "diff": diff,
        "applied": applied,
        "uncertain_lines": uncertain,
        "passes": proposal.passes,
        "parses": proposal.parses,
        "problem": proposal.problem,
        "model": proposal.model,
        "stats": proposal.stats,
        "notes": proposal.notes,
        "lines": line_count(proposal.fill),
        "hunks": hunks_in(diff),  # what `dcode accept --hunks` numbers
    }


def refine_hint(in_place: bool) -> str:
    if in_place:
        return ": `dcode refine` re-masks them"
    from dcode.remote.model import NO_IN_PLACE  # imports torch: only once a server's model is in use

    return f": `dcode refine --lines A-B` regenerates those lines {NO_IN_PLACE}"


def show(proposal: Proposal, view: tuple[str, list, list[int]], diff_only: bool, json_out: bool, applied: bool = False,
         pending: bool = True, in_place: bool = True) -> None:
    """Print a proposal's `proposal_view` (computed before any write: it reads the file). Hints
    name `dcode refine` only while the proposal is pending (not applied, not the demo's), and say
    what it does with this model (`in_place`: re-masks tokens; else it regenerates lines)."""
    diff, highlights, uncertain = view
    if json_out:
        sys.stdout.write(json.dumps(result_json(proposal, diff, uncertain, applied)) + "\n")
        return
    if diff_only:
        sys.stdout.write(diff)
        return
    render_diff(stdout_console(), diff, highlights)
    stats = proposal.stats
    err_console.print(
        f"{proposal.rel_path}: {stats.get('tokens', 0)} tokens in {stats.get('forward_passes', 0)} passes "
        f"({stats.get('tokens_per_forward', 0):.1f} per pass, {stats.get('wall_s', 0):.2f} s)",
        markup=False,
    )
    if uncertain:
        hint = refine_hint(in_place) if pending and not applied else ""
        err_console.print(f"uncertain tokens on line(s) {', '.join(map(str, uncertain))}{hint}", markup=False)
    for note in proposal.notes:
        err_console.print(f"note: {note}", markup=False)
