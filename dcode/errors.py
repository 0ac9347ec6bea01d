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


GPU_OUT_OF_MEMORY = "the GPU ran out of memory (try --int8, a shorter --max-tokens or --device cpu)"
OUT_OF_MEMORY = "out of memory (try a smaller --max-tokens or --dtype bfloat16)"


def out_of_memory(err: BaseException) -> str | None:
    """What to tell the user when `err` is running out of memory, else None; the CLI and the
    editor contract say the same. torch's CUDA error is told by its name (a RuntimeError
    subclass), so that torch is not imported to catch it."""
    if type(err).__name__ == "OutOfMemoryError":
        return GPU_OUT_OF_MEMORY
    return OUT_OF_MEMORY if isinstance(err, MemoryError) else None
