"""User errors on the command line: one line on stderr and the error's exit code; Ctrl-C as one
line saying what it left behind, and exit 130."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from dcode.cli.render import err_console
from dcode.errors import DcodeError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class Interrupted(Exception):
    """Ctrl-C, in words that say what it means for the user's files."""


@contextmanager
def interrupted_means(consequence: str) -> Iterator[None]:
    """Ctrl-C inside the block ends the command with `interrupted; <consequence>`."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {consequence}") from None


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
        except (Interrupted, KeyboardInterrupt) as err:
            message = str(err) if isinstance(err, Interrupted) else "interrupted"
            err_console.print(f"dcode: {message}", markup=False, highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper
