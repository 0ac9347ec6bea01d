"""The console-script entry: routing `dcode complete` to the thin client, and user errors as one
line on stderr and an exit code."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from dcode.errors import EXIT_MODEL, DcodeError, out_of_memory

if TYPE_CHECKING:  # typer (and click) load only once the thin client has not answered
    from click.exceptions import ClickException


def main() -> None:
    """Console-script entry: user errors become one line on stderr and an exit code."""
    from dcode.model.threads import quiet_waiting

    quiet_waiting()  # before anything can import torch
    if sys.argv[1:2] == ["complete"]:  # editors call this per keystroke: skip typer when a server answers
        from dcode.server.client import thin_complete

        thin = thin_complete(sys.argv[2:])
        if thin is not None:
            raise SystemExit(thin)
    import typer

    try:  # newer typer vendors click as typer._click; older typer runs on click itself
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException

    from dcode.cli.app import app

    try:
        # Not standalone: bad flags and arguments come back here instead of as a boxed panel.
        code = app(standalone_mode=False)
    except ClickException as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `dcode bench` alone: the help is the answer
            err.show()
            raise SystemExit(err.exit_code) from None
        _fail(_usage_message(err), err.exit_code)
    except typer.Abort:  # end of input at a prompt
        _fail("aborted", 1)
    except DcodeError as err:
        _fail(str(err), err.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as err:  # MemoryError and torch's CUDA OOM (a RuntimeError subclass) are Exceptions
        if (message := out_of_memory(err)) is not None:
            _fail(message, EXIT_MODEL)
        raise
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage_message(err: ClickException) -> str:
    """Click's message and the command's help to read, e.g. "No such option: --bogus (see `dcode fill --help`)"."""
    ctx = getattr(err, "ctx", None)
    return f"{err.format_message()} (see `{ctx.command_path} --help`)" if ctx is not None else err.format_message()


def _fail(message: str, code: int) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    sys.stderr.write(f"dcode: error: {first}\n")
    raise SystemExit(code)
