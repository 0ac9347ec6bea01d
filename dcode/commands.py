"""What each CLI command does. `cli.py` parses arguments; these functions do the work and turn
user errors into one line on stderr plus the documented exit code."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import typer
from rich.text import Text

from dcode.edit.files import newline_style
from dcode.errors import DcodeError, InputError, NoEditError
from dcode.ui import (
    diff_highlights,
    edit_text,
    live_enabled,
    live_view,
    render_diff,
    stderr_console,
    stdout_console,
    uncertain_spans,
)

if TYPE_CHECKING:  # proposal.py imports torch; the commands that need it import it when they run
    from dcode.edit.change import Change, FileEdit
    from dcode.edit.proposal import Proposal

err_console = stderr_console()


def user_errors(fn: Callable) -> Callable:
    """One line on stderr and the error's exit code; never a traceback for a user error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DcodeError as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else "error"
            err_console.print(f"dcode: error: {message}", markup=False, highlight=False)
            raise typer.Exit(err.exit_code) from None

    return wrapper


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


def load(settings):
    """The model: on the configured server (`endpoint`), else loaded here, with a spinner on
    stderr (loading can take seconds)."""
    if settings.endpoint:
        from dcode.remote.model import connect

        with err_console.status(f"connecting to {settings.endpoint}…", spinner="dots"):
            return connect(settings)
    from dcode.model.loader import load_model

    with err_console.status("loading model…", spinner="dots"):
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


def proposal_view(proposal, tokenizer, settings) -> tuple[str, list, list[int]]:
    """(diff, highlight ranges, uncertain line numbers in the new file)."""
    from dcode.edit.change import numbered_diff

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


def result_json(proposal, diff: str, uncertain: list[int], applied: bool) -> dict:
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


def show(proposal, view: tuple[str, list, list[int]], diff_only: bool, json_out: bool, applied: bool = False,
         pending: bool = True) -> None:
    """Print a proposal's `proposal_view` (computed before any write: it reads the file). Hints
    name `dcode refine` only while the proposal is pending (not applied, not the demo's)."""
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
        hint = ": `dcode refine` re-masks them" if pending and not applied else ""
        err_console.print(f"uncertain tokens on line(s) {', '.join(map(str, uncertain))}{hint}", markup=False)
    for note in proposal.notes:
        err_console.print(f"note: {note}", markup=False)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


@user_errors
def run_propose(spec: str, mode: str, flags: dict, *, yes: bool, diff_only: bool, json_out: bool, live: bool,
                instruction: str | None = None) -> None:
    from dcode.edit.proposal import apply_proposal, clear_pending, save_pending
    from dcode.workflow import Request, propose

    if instruction is not None and not instruction.strip():
        raise InputError("--instruction is empty")
    settings = settings_for(flags)
    model = load(settings)
    stream = propose(Request(spec, mode, instruction), model, settings, progress=index_progress())
    quiet = diff_only or json_out
    proposal = drive(stream, model.tokenizer, settings, live and not quiet, f"{mode} {spec}")
    save_pending(proposal)
    view = proposal_view(proposal, model.tokenizer, settings)
    if yes and proposal.problem:
        show(proposal, view, diff_only, json_out)
        raise NoEditError(f"{proposal.rel_path}: the proposal {proposal.problem}; not written "
                          "(it stays pending: `dcode refine`, `dcode accept` or `dcode reject`)")
    if yes:
        written = apply_proposal(proposal, f"{mode} {spec}")
        clear_pending(proposal.root)
        show(proposal, view, diff_only, json_out, applied=True)
        if not quiet:
            report_applied(written, None, say)
        return
    show(proposal, view, diff_only, json_out)
    if quiet or not interactive():
        if not quiet:
            from dcode.edit.change import hunks_in

            some = " (`--hunks 1,3` only those)" if hunks_in(view[0]) > 1 else ""
            say(f"pending: `dcode accept` applies it{some}, `dcode refine` revises it, `dcode reject` drops it")
        return
    review_pending(proposal, TerminalReview(model, settings), model.tokenizer)


# --------------------------------------------------------------------------------------------
# Review: one key per decision, for one-shot fill/write, the shell and the hook's fix-ups
# --------------------------------------------------------------------------------------------

REVIEW_KEYS = {
    "a": "[a]ccept", "h": "accept [h]unks", "e": "[e]dit", "r": "[r]eject", "f": "re[f]ine",
    "l": "refine [l]ines", "k": "[k]eep pending",
}
PROPOSAL_KEYS = "aherflk"
CHANGE_KEYS = "ahrk"  # the hook's fix-ups across files: no model text to edit or refine

T = TypeVar("T")


def say(message: str) -> None:
    err_console.print(message, markup=False, highlight=False)


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
        show(proposal, proposal_view(proposal, self.model.tokenizer, self.settings), False, False)

    def refine(self, proposal: Proposal, lines: tuple[int, int] | None) -> Proposal | None:
        from dcode.workflow import refine as refine_proposal

        stream = refine_proposal(proposal, self.model, self.settings, lines=lines)
        return drive(stream, self.model.tokenizer, self.settings, True, "refine")


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
                           lambda answer: proposal.fill_lines(text, parse_line_range(answer, "lines")))


def report_applied(written: list[tuple[FileEdit, str]], hunks: set[int] | None, tell: Callable[[str], None]) -> None:
    """Say what was written, and warn about each file that no longer parses."""
    from dcode.context.languages import detect_language
    from dcode.workflow import keeps_parsing

    what = "" if hunks is None else f"hunk{'s' if len(hunks) > 1 else ''} {','.join(map(str, sorted(hunks)))} "
    names = ", ".join(edit.rel_path for edit, _ in written)
    tell(f"applied {what}to {names} (`dcode undo` restores {'them' if len(written) > 1 else 'it'})")
    for edit, old in written:
        if not keeps_parsing(old, edit.new_text, detect_language(edit.path, edit.new_text)):
            tell(f"warning: {edit.rel_path} does not parse after this change (`dcode undo` restores it)")


def accept_pending(pending: Proposal | Change, hunks: set[int] | None, tell: Callable[[str], None]) -> list[Path]:
    """Apply the pending change (or the chosen hunks of it), drop it, say so; the files written."""
    from dcode.edit.change import apply_change
    from dcode.edit.proposal import clear_pending

    change = as_change(pending)
    written = apply_change(change, hunks)
    clear_pending(change.root)
    report_applied(written, hunks, tell)
    return [edit.path for edit, _ in written]


def edit_proposal(proposal: Proposal, tokenizer=None) -> Proposal:
    """The proposal with its fill as the user leaves it in their editor, checked as model output
    is (it must parse). With a tokenizer it gets token ids, so that refine can work on it; the
    user's own text counts as certain."""
    from dcode.context.languages import detect_language
    from dcode.workflow import check_parse

    text = proposal.original_text()
    fill = edit_text(proposal.fill, Path(proposal.rel_path).suffix)
    ids = tokenizer.encode(fill) if tokenizer is not None else []
    edited = dataclasses.replace(proposal, fill=fill, token_ids=ids, confidences=[1.0] * len(ids), parses=True,
                                 problem=None, notes=list(proposal.notes))
    check_parse(edited, text, detect_language(proposal.path, text))
    if edited.problem:
        edited.notes.append(f"the edited text {edited.problem}")
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
    if not interactive():
        sys.stdout.write(diff)
        some = " (`--hunks 1,3` only those)" if hunks_in(diff) > 1 else ""
        say(f"pending: `dcode accept` applies the fix-ups{some}, `dcode reject` drops them")
        return []
    render_diff(stdout_console(), diff, [])
    return review_pending(change, TerminalReview())


@user_errors
def run_refine(flags: dict, *, passes: int, remask: int | None, lines: str | None,
               yes: bool, diff_only: bool, json_out: bool, live: bool) -> None:
    """Refine the pending proposal; `lines` are the file's line numbers (as the diff shows them)."""
    from rich.live import Live

    from dcode.edit.proposal import apply_proposal, clear_pending, load_proposal, save_pending
    from dcode.workflow import refine as refine_proposal

    settings = settings_for(flags)
    proposal = load_proposal(project_root())
    span = proposal.fill_lines(proposal.original_text(), parse_line_range(lines)) if lines else None
    model = load(settings)
    quiet = diff_only or json_out
    show_live = live_enabled(live and settings.live) and not quiet
    with Live(console=err_console, transient=True) if show_live else contextlib.nullcontext() as screen:
        for n in range(passes):
            stream = refine_proposal(proposal, model, settings, remask=remask, lines=span)
            proposal = drive(stream, model.tokenizer, settings, False, "refine")
            save_pending(proposal)
            if screen is not None:
                # The diff on screen is revised in place after each pass.
                from rich.syntax import Syntax

                diff, _, _ = proposal_view(proposal, model.tokenizer, settings)
                screen.update(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
    view = proposal_view(proposal, model.tokenizer, settings)
    written = apply_proposal(proposal, "refine") if yes else []
    if yes:
        clear_pending(proposal.root)
    show(proposal, view, diff_only, json_out, applied=yes)
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

    root = project_root()
    chosen = parse_hunks(hunks) if hunks is not None else None
    pending = edit_proposal(load_proposal(root)) if edit else load_pending(root)
    accept_pending(pending, chosen, say)


@user_errors
def run_reject() -> None:
    from dcode.edit.proposal import clear_pending

    if not clear_pending(project_root()):
        raise InputError("no pending proposal to reject")
    err_console.print("rejected the pending proposal", markup=False)


@user_errors
def run_undo(steps: int, force: bool) -> None:
    from dcode.edit.journal import Journal

    root = project_root()
    journal = Journal(root)
    for _ in range(steps):
        entry = journal.undo(force=force)
        for f in entry.files:
            say(f"restored {shown_path(f.path, root)} (undid: {entry.command})")


@user_errors
def run_context(spec: str, json_out: bool, budget: int | None, model_path: str | None) -> None:
    from dcode.context.gather import format_context
    from dcode.workflow import Request, context_for, resolve

    settings = settings_for({"model": model_path, "context_budget": budget})
    model = load(settings)
    target = resolve(Request(spec))
    _, result = context_for(target, model, settings, progress=index_progress())
    report = format_context(result, json=json_out)
    sys.stdout.write(report if report.endswith("\n") else report + "\n")


@user_errors
def run_info(flags: dict, json_out: bool) -> None:
    from dcode.model.info import describe, readable

    settings = settings_for(flags)
    facts = load(settings).facts() if settings.endpoint else describe(settings.model, settings.device, settings.dtype)
    if json_out:
        sys.stdout.write(json.dumps(facts, indent=2) + "\n")
        return
    width = max(map(len, facts))
    for key, value in facts.items():
        sys.stdout.write(f"{key.replace('_', ' '):<{width}}  {readable(key, value)}\n")


DEMO_FILE = '''"""A few small utilities."""


def mean(values):
    """Return the arithmetic mean of a non-empty list of numbers."""
    # dcode: fill
'''


@user_errors
def run_demo(flags: dict, live: bool) -> None:
    """Fill a marker in a throwaway example file and show what dcode proposes."""
    from dcode.workflow import Request, propose

    settings = settings_for(flags)
    model = load(settings)
    with tempfile.TemporaryDirectory(prefix="dcode-demo-") as tmp:
        path = Path(tmp) / "stats.py"
        path.write_text(DEMO_FILE, encoding="utf-8")
        err_console.print(f"demo: filling the `dcode: fill` marker in {path.name} with {model.name} on {model.device}", markup=False)
        stream = propose(Request(str(path)), model, settings)
        proposal = drive(stream, model.tokenizer, settings, live, "fill stats.py")
        show(proposal, proposal_view(proposal, model.tokenizer, settings), False, False, pending=False)
    say("demo: nothing was written; `dcode fill FILE` proposes the same for a file of yours")


@user_errors
def run_bench_context(path: Path | None) -> None:
    import sysconfig

    from dcode.context.bench import format_bench, run_context_bench

    root = path or Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    settings = settings_for({})
    try:
        from dcode.model.loader import load_model

        tok = load_model(settings.model, device="cpu").tokenizer
        count = lambda s: len(tok.encode(s))  # noqa: E731
    except DcodeError:
        count = lambda s: len(s) // 4 + 1  # noqa: E731
    sys.stdout.write(format_bench(run_context_bench(root, count)) + "\n")


@user_errors
def run_ask(question: str, flags: dict, live: bool) -> None:
    """An instruction to an instruct model (Dream/LLaDA family), answered on stdout."""
    from dcode.diffusion.engine import generate_stream, has_chat_template
    from dcode.model.hf_tokenizers import chat_prompt_ids

    settings = settings_for(flags)
    model = load_local(settings, "ask")
    if not has_chat_template(model):
        raise InputError(f"{model.name} has no chat template; `dcode ask` needs an instruct model (--model PATH)")
    ids = chat_prompt_ids(model.tokenizer, model.family, [{"role": "user", "content": question}])
    result = drive(generate_stream(model, ids, settings.decode_options()), model.tokenizer, settings, live, "ask")
    sys.stdout.write(result.text.rstrip() + "\n")
    err_console.print(f"{result.stats.tokens} tokens in {result.stats.forward_passes} passes", markup=False)


@user_errors
def run_shell(flags: dict) -> None:
    from dcode.shell import Shell

    if not sys.stdin.isatty():
        raise InputError("the interactive session needs a terminal; use `dcode fill`, `dcode complete --jsonl`, ...")
    Shell(flags, err_console).loop()


@user_errors
def run_bench_speed(flags: dict, limit: int) -> None:
    from dcode.diffusion.bench import run_speed_bench

    settings = settings_for(flags)
    sys.stdout.write(run_speed_bench(load_local(settings, "bench speed"), limit) + "\n")
