"""User-facing errors: each carries a one-line message and the process exit code the CLI uses."""

from __future__ import annotations

# Exit codes shared by every command (README "Exit codes").
EXIT_OK = 0
EXIT_CHANGED = 1  # hook/check mode: files were (or would be) changed
EXIT_USAGE = 2  # usage or input error: bad target, missing/binary/non-UTF-8 file, bad config
EXIT_MODEL = 3  # model or device unavailable: missing/corrupt checkpoint, no CUDA, out of memory
EXIT_NO_EDIT = 4  # the model produced no valid edit


class DcodeError(Exception):
    """An error a user can act on. The CLI prints `str(err)` on one line and exits `exit_code`."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(DcodeError):
    """Bad user input: missing or unreadable file, malformed target, unknown option value."""

    exit_code = EXIT_USAGE


class ModelError(DcodeError):
    """The model cannot be used: missing, corrupt or mismatched checkpoint, device problems."""

    exit_code = EXIT_MODEL


class NoEditError(DcodeError):
    """The sampler ran but produced nothing usable."""

    exit_code = EXIT_NO_EDIT
