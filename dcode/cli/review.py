"""The review: one key per decision, for one-shot fill/write, the shell and the hook's fix-ups.

Accept all or some hunks, edit the proposed text first, reject, refine (all of it or chosen
lines), or keep it pending. `ReviewUI` is what a front end lends the review; `TerminalReview` is
the one-shot commands' (Rich prompts on stderr), the shell has its own.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from rich.text import Text

from dcode.cli import session
from dcode.cli.render import err_console, proposal_view, render_diff, say, show
from dcode.errors import InputError
from dcode.model.console import stdout_console

if TYPE_CHECKING:  # proposal.py imports torch; the commands that need it import it when they run
    from dcode.edit.change import Change, FileEdit
    from dcode.edit.proposal import Proposal

REVIEW_KEYS = {
    "a": "[a]ccept", "h": "accept [h]unks", "e": "[e]dit", "r": "[r]eject", "f": "re[f]ine",
    "l": "refine [l]ines", "k": "[k]eep pending",
}
PROPOSAL_KEYS = "aherflk"
CHANGE_KEYS = "ahrk"  # the hook's fix-ups across files: no model text to edit or refine

T = TypeVar("T")


def review_prompt(keys: str) -> str:
    return ", ".join(REVIEW_KEYS[key] for key in keys)


class ReviewUI(Protocol):
    """What a front end lends the review: its prompts, its output, and refinement with its model."""

    def key(self, keys: str) -> str: ...

    def ask(self, question: str) -> str: ...

    def say(self, message: str) -> None: ...

    def show(self, proposal: Proposal) -> None: ...

    def refine(self, proposal: Proposal, lines: tuple[int, int] | None) -> Proposal | None: ...


class TerminalReview:
    """The review of one-shot `fill`/`write` and `hook run --review`: Rich prompts on stderr."""

    def __init__(self, model=None, settings=None) -> None:
        self.model, self.settings = model, settings

    def key(self, keys: str) -> str:
        from rich.prompt import Prompt

        # A Text prompt is printed as it is; a str one is Rich markup, where `[a]` is a tag.
        return Prompt.ask(Text(review_prompt(keys)), console=err_console, choices=list(keys), default="k")

    def ask(self, question: str) -> str:
        return err_console.input(Text(f"{question}: "))

    def say(self, message: str) -> None:
        say(message)

    def show(self, proposal: Proposal) -> None:
        from dcode.workflow import refines_in_place

        show(proposal, proposal_view(proposal, self.model.tokenizer, self.settings), False, False,
             in_place=refines_in_place(self.model))

    def refine(self, proposal: Proposal, lines: tuple[int, int] | None) -> Proposal | None:
        from dcode.workflow import refine as refine_proposal

        stream = refine_proposal(proposal, self.model, self.settings, lines=lines)
        return session.drive(stream, self.model.tokenizer, self.settings, True, "refine")


def ask_until_valid(ui: ReviewUI, question: str, parse: Callable[[str], T]) -> T | None:
    """Ask until `parse` takes the answer, saying why it did not; an empty answer is None (back)."""
    while True:
        answer = ui.ask(f"{question} (empty: back)").strip()
        if not answer:
            return None
        try:
            return parse(answer)
        except InputError as err:
            ui.say(str(err))


def as_change(pending: Proposal | Change) -> Change:
    from dcode.edit.change import Change

    return pending if isinstance(pending, Change) else pending.change(f"accept {pending.rel_path}")


def ask_hunks(pending: Proposal | Change, ui: ReviewUI) -> set[int] | None:
    from dcode.edit.change import check_hunks, parse_hunks

    total = as_change(pending).hunk_count()
    return ask_until_valid(ui, f"hunks to accept, 1-{total}", lambda answer: check_hunks(parse_hunks(answer), total))


def ask_lines(proposal: Proposal, ui: ReviewUI) -> tuple[int, int] | None:
    """File lines to refine, as lines of the fill (what refine takes)."""
    text = proposal.original_text()
    first, last = proposal.file_lines(text)
    return ask_until_valid(ui, f"lines to refine, {first}-{last}",
                           lambda answer: proposal.fill_lines(text, session.parse_line_range(answer, "lines")))


def report_applied(written: list[tuple[FileEdit, str]], hunks: set[int] | None, tell: Callable[[str], None]) -> bool:
    """Say what was written, and warn about each file that no longer parses (then True)."""
    from dcode.context.languages import detect_language
    from dcode.workflow import keeps_parsing

    what = "" if hunks is None else f"hunk{'s' if len(hunks) > 1 else ''} {','.join(map(str, sorted(hunks)))} "
    names = ", ".join(edit.rel_path for edit, _ in written)
    tell(f"applied {what}to {names} (`dcode undo` restores {'them' if len(written) > 1 else 'it'})")
    broken = [edit for edit, old in written
              if not keeps_parsing(old, edit.new_text, detect_language(edit.path, edit.new_text))]
    for edit in broken:
        tell(f"warning: {edit.rel_path} does not parse after this change (`dcode undo` restores it)")
    return bool(broken)


def accept_pending(pending: Proposal | Change, hunks: set[int] | None, tell: Callable[[str], None]) -> list[Path]:
    """Apply the pending change (or the chosen hunks of it), drop it, say so; the files written."""
    from dcode.edit.change import apply_change
    from dcode.edit.proposal import Proposal, clear_pending

    change = as_change(pending)
    written = apply_change(change, hunks)
    clear_pending(change.root)
    warned = report_applied(written, hunks, tell)
    if isinstance(pending, Proposal) and pending.problem and not warned:  # applied on the user's word
        tell(f"warning: applied although the proposal {pending.problem} (`dcode undo` restores it)")
    return [edit.path for edit, _ in written]


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


def edit_proposal(proposal: Proposal, tokenizer=None) -> Proposal:
    """The proposal with its fill as the user leaves it in their editor, checked as model output
    is (`dcode.workflow.verify`). With a tokenizer it gets token ids, so that refine can work on it; the
    user's own text counts as certain."""
    from dcode.workflow import hole_target, verify

    text = proposal.original_text()
    fill = edit_text(proposal.fill, Path(proposal.rel_path).suffix)
    ids = tokenizer.encode(fill) if tokenizer is not None else []
    edited = dataclasses.replace(proposal, fill=fill, token_ids=ids, confidences=[1.0] * len(ids), parses=True,
                                 problem=None, notes=list(proposal.notes))
    verify(edited, hole_target(proposal, text))
    return edited


def review_pending(pending: Proposal | Change, ui: ReviewUI, tokenizer=None) -> list[Path]:
    """Decide on the pending proposal (or the hook's pending fix-ups), one key at a time, until it
    is applied, dropped or kept pending. Returns the files written."""
    from dcode.edit.proposal import Proposal, clear_pending, save_pending

    keys = PROPOSAL_KEYS if isinstance(pending, Proposal) else CHANGE_KEYS
    while True:
        choice = ui.key(keys)
        if choice in ("a", "h"):
            hunks = ask_hunks(pending, ui) if choice == "h" else None
            if choice == "h" and hunks is None:
                continue
            return accept_pending(pending, hunks, ui.say)
        if choice == "r":
            clear_pending(pending.root)
            ui.say("rejected")
            return []
        if choice == "k":
            ui.say(f"kept pending (accept{', refine' if keys == PROPOSAL_KEYS else ''} or reject it later)")
            return []
        if choice == "e":
            pending = edit_proposal(pending, tokenizer)
        else:
            lines = ask_lines(pending, ui) if choice == "l" else None
            if choice == "l" and lines is None:
                continue
            refined = ui.refine(pending, lines)
            if refined is None:  # cancelled
                continue
            pending = refined
        save_pending(pending)
        ui.show(pending)


def review_fixups(change: Change) -> list[Path]:
    """One review of the hook's fix-ups across all files: on a terminal, the diff and the keys;
    elsewhere they stay pending for `dcode accept [--hunks]`. Returns the files written."""
    from dcode.edit.change import hunks_in
    from dcode.edit.proposal import save_pending

    save_pending(change)
    diff = change.diff()
    if not session.interactive():
        sys.stdout.write(diff)
        some = " (`--hunks 1,3` only those)" if hunks_in(diff) > 1 else ""
        say(f"pending: `dcode accept` applies the fix-ups{some}, `dcode reject` drops them")
        return []
    render_diff(stdout_console(), diff, [])
    return review_pending(change, TerminalReview())
