"""The interactive session (`dcode` with no arguments, or `dcode shell`).

A prompt-toolkit loop in the repository with history and completion of commands, paths and
`path::Symbol` targets. The model is loaded once and stays loaded. After a proposal, single keys
act on it: a accept, h accept some hunks, e edit, r reject, f refine, l refine chosen lines, k keep
it pending (the review is `dcode.cli.review.review_pending`, shared with one-shot `fill`). Ctrl-C
stops a running generation and returns to the prompt; Ctrl-D or `exit` leaves.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from rich.console import Console

from dcode.cli import session as cli_session
from dcode.cli.render import proposal_view, render_diff
from dcode.cli.review import PROPOSAL_KEYS, accept_pending, review_pending, review_prompt
from dcode.errors import DcodeError, InputError
from dcode.shell.completion import COMMANDS, ShellCompleter


class Shell:
    def __init__(self, flags: dict[str, Any], console: Console, input=None, output=None) -> None:
        from dcode.edit.journal import state_dir

        self.flags = flags
        self.console = console
        self.root = cli_session.project_root()
        self.settings = cli_session.settings_for(flags)
        self.model = None
        self.index = None
        history_file = state_dir(self.root) / "history"
        try:
            history_file.parent.mkdir(parents=True, exist_ok=True)
            history = FileHistory(str(history_file))
        except OSError:
            history = InMemoryHistory()
        self.session: PromptSession = PromptSession(
            history=history, completer=ShellCompleter(self), complete_while_typing=False,
            input=input, output=output,
        )
        keys = KeyBindings()
        for key in PROPOSAL_KEYS:
            keys.add(key)(lambda event, key=key: event.app.exit(result=key))
        keys.add("c-c")(lambda event: event.app.exit(result="k"))
        self.keys = PromptSession(key_bindings=keys, input=input, output=output)

    # -- helpers ----------------------------------------------------------------------------
    def ensure_model(self):
        if self.model is None:
            self.model = cli_session.load(self.settings)
        return self.model

    def symbols(self, path: str) -> list[str]:
        from dcode.context.index import RepoIndex

        try:
            if self.index is None:
                self.index = RepoIndex.open(self.root)
            info = self.index.get(Path(path))
        except (DcodeError, OSError):
            return []
        return sorted({d.qualname for d in info.definitions}) if info else []

    def run_stream(self, stream, title: str):
        """Drive a proposal stream; Ctrl-C cancels it and returns None."""
        try:
            return cli_session.drive(stream, self.model.tokenizer, self.settings, True, title)
        except KeyboardInterrupt:
            self.console.print("cancelled", markup=False)
            return None

    # -- commands ---------------------------------------------------------------------------
    def propose(self, args: list[str], mode: str) -> None:
        from dcode.edit.proposal import save_pending
        from dcode.workflow import Request, propose

        if not args:
            raise InputError(f"usage: {COMMANDS[mode]}")
        instruction = " ".join(args[1:]) or None
        model = self.ensure_model()
        proposal = self.run_stream(propose(Request(args[0], mode, instruction), model, self.settings), f"{mode} {args[0]}")
        if proposal is not None:
            save_pending(proposal)
            self.review(proposal)

    def refine(self, args: list[str]) -> None:
        """`refine [A-B] [--passes N]`: A-B are file lines, as the diff numbers them."""
        from dcode.edit.proposal import load_proposal, save_pending
        from dcode.workflow import refine

        passes, span = 1, None
        it = iter(args)
        for arg in it:
            if arg == "--passes":
                passes = int(next(it, "1"))
            else:
                span = cli_session.parse_line_range(arg, "lines")
        proposal = load_proposal(self.root)
        lines = proposal.fill_lines(proposal.original_text(), span) if span else None
        model = self.ensure_model()
        for _ in range(passes):
            refined = self.run_stream(refine(proposal, model, self.settings, lines=lines), "refine")
            if refined is None:
                break
            proposal = refined
            save_pending(proposal)
        self.review(proposal)

    def review(self, proposal) -> None:
        """Show the pending diff; single keys decide what happens to it."""
        ui = ShellReview(self)
        ui.show(proposal)
        review_pending(proposal, ui, self.model.tokenizer)

    def say(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False)

    def simple(self, command: str, args: list[str]) -> None:
        from dcode.edit.change import parse_hunks
        from dcode.edit.journal import Journal
        from dcode.edit.proposal import clear_pending, load_pending

        if command == "accept":
            accept_pending(load_pending(self.root), parse_hunks(" ".join(args)) if args else None, self.say)
        elif command == "reject":
            if not clear_pending(self.root):
                raise InputError("no pending proposal to reject")
            self.console.print("rejected", markup=False)
        elif command == "undo":
            entry = Journal(self.root).undo()
            for f in entry.files:
                self.say(f"restored {cli_session.shown_path(f.path, self.root)}")
        elif command == "context":
            from dcode.context.result import format_context
            from dcode.workflow import Request, context_for, resolve

            if len(args) != 1:
                raise InputError(f"usage: {COMMANDS['context']}")
            _, result = context_for(resolve(Request(args[0])), self.ensure_model(), self.settings)
            self.console.print(format_context(result, json=False), markup=False, highlight=False)
        elif command == "info":
            from dcode.remote.model import RemoteModel

            model = self.ensure_model()
            if isinstance(model, RemoteModel):  # a server's model: where it is and what it can do
                self.console.print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in model.facts().items()),
                                   markup=False)
                return
            self.console.print(
                f"{model.name}: {model.num_parameters / 1e6:.1f}M parameters, {model.device}, "
                f"{str(model.dtype).removeprefix('torch.')}, {model.path}", markup=False,
            )
        elif command == "help":
            for text in COMMANDS.values():
                self.console.print(f"  {text}", markup=False)

    def handle(self, line: str) -> bool:
        """Run one command line; False when the session should end."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise InputError(f"cannot parse the line: {exc}") from None
        if not words:
            return True
        command, args = words[0], words[1:]
        if command in ("exit", "quit"):
            return False
        if command in ("fill", "write"):
            self.propose(args, command)
        elif command == "refine":
            self.refine(args)
        elif command in COMMANDS:
            self.simple(command, args)
        else:
            raise InputError(f"unknown command {command!r} (type help)")
        return True

    def loop(self) -> None:
        self.console.print(f"dcode shell in {self.root} — type help, Ctrl-D to leave", markup=False)
        while True:
            try:
                line = self.session.prompt("dcode> ")
            except KeyboardInterrupt:
                continue
            except EOFError:
                return
            try:
                if not self.handle(line):
                    return
            except DcodeError as err:
                self.console.print(f"error: {str(err).splitlines()[0]}", markup=False)
            except KeyboardInterrupt:
                self.console.print("cancelled", markup=False)


class ShellReview:
    """The review's prompts and output in the shell: single keys, the session's line prompt, and
    refinement that Ctrl-C cancels."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def key(self, keys: str) -> str:
        return self.shell.keys.prompt(f"{review_prompt(keys)} > ")

    def ask(self, question: str) -> str:
        return self.shell.session.prompt(f"{question} > ")

    def say(self, message: str) -> None:
        self.shell.say(message)

    def show(self, proposal) -> None:
        diff, highlights, uncertain = proposal_view(proposal, self.shell.model.tokenizer, self.shell.settings)
        render_diff(self.shell.console, diff, highlights)
        if uncertain:
            self.say(f"uncertain: line(s) {', '.join(map(str, uncertain))}")
        for note in proposal.notes:
            self.say(f"note: {note}")

    def refine(self, proposal, lines: tuple[int, int] | None):
        from dcode.workflow import refine

        return self.shell.run_stream(refine(proposal, self.shell.model, self.shell.settings, lines=lines), "refine")
