"""User errors on the command line: one line on stderr and the error's exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

from dcode.cli.render import err_console
from dcode.errors import DcodeError


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
