"""The interactive session (`dcode` alone, or `dcode shell`): `repl.py` the loop and its commands,
`completion.py` what it completes."""

from __future__ import annotations

import sys

from dcode.cli.render import err_console
from dcode.errors import InputError
from dcode.shell.completion import ShellCompleter
from dcode.shell.repl import Shell

__all__ = ["Shell", "ShellCompleter", "run_shell"]


def run_shell(flags: dict) -> None:
    if not sys.stdin.isatty():
        raise InputError("the interactive session needs a terminal; use `dcode fill`, `dcode complete --jsonl`, ...")
    Shell(flags, err_console).loop()
