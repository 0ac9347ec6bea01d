"""`dcode complete` in-process: requests on stdin, one answer per request on stdout."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any

from dcode.complete.completer import Completer
from dcode.complete.response import exit_code


def serve_stdio(stdin: IO[str], stdout: IO[str], flags: dict[str, Any], jsonl: bool,
                write: Callable[[str], None] | None = None) -> int:
    """One request (or, with jsonl, one per line) in; one response per request out, flushed."""
    completer = Completer(flags)
    emit = write or (lambda text: (stdout.write(text), stdout.flush()))
    if not jsonl:
        response = completer.answer_line(stdin.read())
        emit(json.dumps(response) + "\n")
        return exit_code(response)
    for line in stdin:  # one response per line, a blank one included: editors pair them up by order
        emit(json.dumps(completer.answer_line(line)) + "\n")
    return 0
