"""What the shell completes: its commands, then file paths, and `path::` that file's symbols."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

if TYPE_CHECKING:  # the shell hands itself to its completer
    from dcode.shell.repl import Shell

COMMANDS = {
    "fill": "fill TARGET [INSTRUCTION]: fill a hole (marker, line, range, stub, syntax error)",
    "write": "write TARGET [INSTRUCTION]: write a function body (the instruction says what it should do)",
    "refine": "refine [A-B] [--passes N]: refine the pending proposal (all weak tokens, or file lines A-B)",
    "accept": "accept [HUNKS]: apply the pending proposal (or only hunks such as 1,3)",
    "reject": "reject: drop the pending proposal",
    "undo": "undo: restore the files of the last applied change",
    "context": "context TARGET: show the context the model would see",
    "info": "info: the loaded model and device",
    "help": "help: this list",
    "exit": "exit: leave (Ctrl-D also works)",
}


class ShellCompleter(Completer):
    """Commands first; then file paths, and `path::` completes that file's symbols."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event) -> Iterable[Completion]:
        before = document.text_before_cursor
        words = before.split()
        if not words or (len(words) == 1 and not before.endswith(" ")):
            prefix = words[0] if words else ""
            for name in COMMANDS:
                if name.startswith(prefix):
                    yield Completion(name, start_position=-len(prefix), display_meta=COMMANDS[name])
            return
        word = document.get_word_before_cursor(WORD=True)
        if "::" in word:
            path, _, partial = word.partition("::")
            for name in self.shell.symbols(path):
                if name.startswith(partial):
                    yield Completion(name, start_position=-len(partial))
            return
        yield from self.paths.get_completions(Document(word, len(word)), complete_event)
