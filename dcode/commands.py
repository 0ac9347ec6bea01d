"""What each CLI command does. `cli.py` parses arguments; these functions do the work and turn
user errors into one line on stderr plus the documented exit code."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from dcode.edit.files import newline_style
from dcode.errors import DcodeError, InputError, NoEditError
from dcode.ui import (
    diff_highlights,
    live_enabled,
    live_view,
    render_diff,
    stderr_console,
    stdout_console,
    uncertain_spans,
    unified_diff,
)

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


def parse_line_range(text: str) -> tuple[int, int]:
    try:
        a, _, b = text.partition("-")
        first, last = int(a), int(b or a)
    except ValueError:
        raise InputError(f"--lines {text!r}: expected A-B, e.g. 3-5") from None
    if first < 1 or last < first:
        raise InputError(f"--lines {text!r}: expected 1 <= A <= B")
    return first, last


def project_root() -> Path:
    from dcode.context.index import find_repo_root

    return find_repo_root(Path.cwd())


def settings_for(flags: dict[str, Any]):
    from dcode.settings import load_settings

    settings, warnings = load_settings(project_root(), flags)
    for warning in warnings:
        err_console.print(f"dcode: warning: {warning}", markup=False)
    return settings


def load(settings):
    """Load the model with a spinner on stderr (loading can take seconds)."""
    from dcode.model.loader import load_model

    with err_console.status("loading model…", spinner="dots"):
        return load_model(settings.model, device=settings.device, dtype=settings.dtype, int8=settings.int8)


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
    text = proposal.original_text()
    new = proposal.new_text(text)
    diff = unified_diff(proposal.rel_path, text, new)
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
    text_lines = proposal.fill.count("\n")
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
        "lines": text_lines,
    }


def show(proposal, view: tuple[str, list, list[int]], diff_only: bool, json_out: bool, applied: bool = False) -> None:
    """Print a proposal's `proposal_view` (computed before any write: it reads the file)."""
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
        err_console.print(f"uncertain tokens on line(s) {', '.join(map(str, uncertain))}: `dcode refine` re-masks them", markup=False)
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
        apply_proposal(proposal, f"{mode} {spec}")
        clear_pending(proposal.root)
        show(proposal, view, diff_only, json_out, applied=True)
        if not quiet:
            err_console.print(f"applied to {proposal.rel_path} (`dcode undo` restores it)", markup=False)
        return
    show(proposal, view, diff_only, json_out)
    if quiet or not interactive():
        if not quiet:
            err_console.print("pending: `dcode accept` applies it, `dcode refine` revises it, `dcode reject` drops it", markup=False)
        return
    review(proposal, model, settings)


def review(proposal, model, settings) -> None:
    """Interactive accept / reject / refine loop on a terminal."""
    from rich.prompt import Prompt

    from dcode.edit.proposal import apply_proposal, clear_pending, save_pending
    from dcode.workflow import refine as refine_proposal

    while True:
        choice = Prompt.ask(
            "[a]ccept, [r]eject, re[f]ine, refine [l]ines, [k]eep pending", console=err_console,
            choices=["a", "r", "f", "l", "k"], default="k",
        )
        if choice == "a":
            apply_proposal(proposal, f"accept {proposal.rel_path}")
            clear_pending(proposal.root)
            err_console.print(f"applied to {proposal.rel_path} (`dcode undo` restores it)", markup=False)
            return
        if choice == "r":
            clear_pending(proposal.root)
            err_console.print("rejected", markup=False)
            return
        if choice == "k":
            return
        span = parse_line_range(Prompt.ask("lines (A-B of the proposal)", console=err_console)) if choice == "l" else None
        stream = refine_proposal(proposal, model, settings, lines=span)
        proposal = drive(stream, model.tokenizer, settings, True, "refine")
        save_pending(proposal)
        show(proposal, proposal_view(proposal, model.tokenizer, settings), False, False)


@user_errors
def run_refine(flags: dict, *, passes: int, remask: int | None, lines: tuple[int, int] | None,
               yes: bool, diff_only: bool, json_out: bool, live: bool) -> None:
    from rich.live import Live

    from dcode.edit.proposal import apply_proposal, clear_pending, load_pending, save_pending
    from dcode.workflow import refine as refine_proposal

    settings = settings_for(flags)
    proposal = load_pending(project_root())
    model = load(settings)
    quiet = diff_only or json_out
    show_live = live_enabled(live and settings.live) and not quiet
    with Live(console=err_console, transient=True) if show_live else contextlib.nullcontext() as screen:
        for n in range(passes):
            stream = refine_proposal(proposal, model, settings, remask=remask, lines=lines)
            proposal = drive(stream, model.tokenizer, settings, False, "refine")
            save_pending(proposal)
            if screen is not None:
                # The diff on screen is revised in place after each pass.
                from rich.syntax import Syntax

                diff, _, _ = proposal_view(proposal, model.tokenizer, settings)
                screen.update(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
    view = proposal_view(proposal, model.tokenizer, settings)
    if yes:
        apply_proposal(proposal, "refine")
        clear_pending(proposal.root)
    show(proposal, view, diff_only, json_out, applied=yes)
    if not quiet and not yes:
        err_console.print("pending: `dcode accept` applies it, `dcode reject` drops it", markup=False)


@user_errors
def run_accept() -> None:
    from dcode.edit.proposal import apply_proposal, clear_pending, load_pending

    proposal = load_pending(project_root())
    apply_proposal(proposal, f"accept {proposal.rel_path}")
    clear_pending(proposal.root)
    err_console.print(f"applied to {proposal.rel_path} (`dcode undo` restores it)", markup=False)


@user_errors
def run_reject() -> None:
    from dcode.edit.proposal import clear_pending

    if not clear_pending(project_root()):
        raise InputError("no pending proposal to reject")
    err_console.print("rejected the pending proposal", markup=False)


@user_errors
def run_undo(steps: int, force: bool) -> None:
    from dcode.edit.journal import Journal

    journal = Journal(project_root())
    for _ in range(steps):
        entry = journal.undo(force=force)
        for f in entry.files:
            err_console.print(f"restored {f.path} (undid: {entry.command})", markup=False)


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
    from dcode.model.info import describe

    settings = settings_for(flags)
    facts = describe(settings.model, settings.device, settings.dtype)
    if json_out:
        sys.stdout.write(json.dumps(facts, indent=2) + "\n")
        return
    width = max(map(len, facts))
    for key, value in facts.items():
        sys.stdout.write(f"{key.replace('_', ' '):<{width}}  {value}\n")


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
        show(proposal, proposal_view(proposal, model.tokenizer, settings), False, False)


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
    model = load(settings)
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
    sys.stdout.write(run_speed_bench(load(settings), limit) + "\n")
