"""`dcode fill|write|refine|accept|reject|undo`: a proposal from being made to being applied,
dropped or undone."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from dcode.cli import session
from dcode.cli.errors import interrupted_means, user_errors
from dcode.cli.render import err_console, live_enabled, live_screen, proposal_view, say, show
from dcode.cli.review import TerminalReview, accept_pending, edit_proposal, report_applied, review_pending
from dcode.errors import InputError, NoEditError

if TYPE_CHECKING:  # proposal.py imports torch; the commands that need it import it when they run
    from dcode.edit.proposal import Proposal


@user_errors
def run_propose(spec: str, mode: str, flags: dict, *, yes: bool, diff_only: bool, json_out: bool, live: bool,
                instruction: str | None = None) -> None:
    if instruction is not None and not instruction.strip():
        raise InputError("--instruction is empty")
    settings = session.settings_for(flags)
    session.check_model(settings)
    session.check_target(spec)
    from dcode.edit.proposal import apply_proposal, clear_pending, save_pending  # they import torch
    from dcode.workflow import Request, propose, refines_in_place

    quiet = diff_only or json_out
    with interrupted_means("nothing was written"):
        model = session.load(settings)
        stream = propose(Request(spec, mode, instruction), model, settings, progress=session.index_progress())
        proposal = session.drive(stream, model.tokenizer, settings, live and not quiet, f"{mode} {spec}")
    save_pending(proposal)
    view = proposal_view(proposal, model.tokenizer, settings)
    in_place = refines_in_place(model)
    if yes:
        refuse_unverified(proposal, view, diff_only, json_out, in_place)
        written = apply_proposal(proposal, f"{mode} {spec}")
        clear_pending(proposal.root)
        show(proposal, view, diff_only, json_out, applied=True)
        if not quiet:
            report_applied(written, None, say)
        return
    show(proposal, view, diff_only, json_out, in_place=in_place)
    if quiet or not session.interactive():
        if not quiet:
            from dcode.edit.change import hunks_in

            some = " (`--hunks 1,3` only those)" if hunks_in(view[0]) > 1 else ""
            say(f"pending: `dcode accept` applies it{some}, `dcode refine` revises it, `dcode reject` drops it")
        return
    review_pending(proposal, TerminalReview(model, settings), model.tokenizer)


def refuse_unverified(proposal: Proposal, view: tuple, diff_only: bool, json_out: bool, in_place: bool) -> None:
    """Under `--yes` a proposal that is not verified is shown, not written (exit 4): it stays
    pending for the user to look at."""
    if proposal.problem:
        show(proposal, view, diff_only, json_out, in_place=in_place)
        raise NoEditError(f"{proposal.rel_path}: the proposal {proposal.problem}; not written "
                          "(it stays pending: `dcode refine`, `dcode accept` or `dcode reject`)")


@user_errors
def run_refine(flags: dict, *, passes: int, remask: int | None, lines: str | None,
               yes: bool, diff_only: bool, json_out: bool, live: bool) -> None:
    """Refine the pending proposal; `lines` are the file's line numbers (as the diff shows them)."""
    settings = session.settings_for(flags)
    session.check_model(settings)
    chosen = session.parse_line_range(lines) if lines else None
    from dcode.edit.proposal import apply_proposal, clear_pending, load_proposal, save_pending  # they import torch
    from dcode.workflow import refine as refine_proposal
    from dcode.workflow import refines_in_place

    proposal = load_proposal(session.project_root())
    span = proposal.fill_lines(proposal.original_text(), chosen) if chosen else None
    quiet = diff_only or json_out
    show_live = live_enabled(live and settings.live) and not quiet
    with interrupted_means("nothing was written"):
        model = session.load(settings)
        with live_screen(err_console) if show_live else contextlib.nullcontext() as screen:
            for n in range(passes):
                stream = refine_proposal(proposal, model, settings, remask=remask, lines=span)
                proposal = session.drive(stream, model.tokenizer, settings, False, "refine")
                save_pending(proposal)
                if screen is not None:
                    # The diff on screen is revised in place after each pass.
                    from rich.syntax import Syntax

                    diff, _, _ = proposal_view(proposal, model.tokenizer, settings)
                    screen.update(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
    view = proposal_view(proposal, model.tokenizer, settings)
    if yes:
        refuse_unverified(proposal, view, diff_only, json_out, refines_in_place(model))
    written = apply_proposal(proposal, "refine") if yes else []
    if yes:
        clear_pending(proposal.root)
    show(proposal, view, diff_only, json_out, applied=yes, in_place=refines_in_place(model))
    if quiet:
        return
    if yes:
        report_applied(written, None, say)
    else:
        say("pending: `dcode accept` applies it, `dcode reject` drops it")


@user_errors
def run_accept(hunks: str | None = None, edit: bool = False) -> None:
    """Apply the pending change: all of it, or the hunks numbered as its diff shows them; `edit`
    first opens the proposed text in the user's editor."""
    from dcode.edit.change import parse_hunks
    from dcode.edit.proposal import load_pending, load_proposal

    root = session.project_root()
    chosen = parse_hunks(hunks) if hunks is not None else None
    pending = edit_proposal(load_proposal(root)) if edit else load_pending(root)
    accept_pending(pending, chosen, say)


@user_errors
def run_reject() -> None:
    from dcode.edit.proposal import clear_pending

    if not clear_pending(session.project_root()):
        raise InputError("no pending proposal to reject")
    err_console.print("rejected the pending proposal", markup=False)


@user_errors
def run_undo(steps: int, force: bool) -> None:
    from dcode.edit.journal import Journal

    root = session.project_root()
    journal = Journal(root)
    for _ in range(steps):
        entry = journal.undo(force=force)
        for f in entry.files:
            say(f"restored {session.shown_path(f.path, root)} (undid: {entry.command})")
