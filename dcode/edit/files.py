"""Safe file writes: atomic, mode-preserving, refusing to overwrite a file changed behind us.

Every write first records an undo entry in the journal (see `journal.py`), then replaces the file
through a temporary file in the same directory and `os.replace`, so a crash leaves either the old
or the new file, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from dcode.errors import InputError


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None


def newline_style(text: str) -> str:
    """The file's dominant line ending, so inserted code matches it."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def splice_fill(text: str, start: int, end: int, fill: str) -> str:
    """`text` with `fill` in place of text[start:end], in the file's newline style; a fill that
    replaces whole lines keeps the line break after it."""
    fill = fill.replace("\r\n", "\n")
    at_line_start = end == len(text) or text[end - 1 : end] in ("\n", "")
    if fill and at_line_start and start > 0 and text[start - 1] == "\n" and not fill.endswith("\n"):
        fill += "\n"
    return text[:start] + fill.replace("\n", newline_style(text)) + text[end:]


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically, keeping its permission bits."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".dcode-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_unchanged(path: Path, expected_hash: str) -> bytes:
    """The file's current bytes, or an error if they differ from what was read before."""
    data = read_bytes(path)
    if content_hash(data) != expected_hash:
        raise InputError(f"{path}: changed since dcode read it; not overwriting (run the command again)")
    return data
