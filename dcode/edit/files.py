"""Safe file writes: atomic, keeping mode, owner and group, refusing to overwrite a file changed
behind us or one marked read-only.

Every write first records an undo entry in the journal (see `journal.py`), then replaces the file
through a temporary file in the same directory and `os.replace`, so a crash leaves either the old
or the new file, never half of one.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

from dcode.context.languages import detect_language
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


def source_encoding(path: Path, head: bytes) -> str:
    """The codec of a source file whose text begins with `head`: UTF-8, except for a Python file
    whose PEP 263 coding line (`# -*- coding: latin-1 -*-`, in its first two lines) declares
    another; Python reads such a file in that encoding, so dcode reads and writes it in it too."""
    first_line = head.split(b"\n", 1)[0].decode("latin-1")  # a shebang is ASCII whatever the codec
    if detect_language(path, first_line).name != "python":
        return "utf-8"
    try:
        declared, _ = tokenize.detect_encoding(io.BytesIO(head).readline)
    except SyntaxError as exc:
        if str(exc).startswith("invalid or missing"):
            return "utf-8"  # no coding line, and bytes that are not UTF-8: decoding says so
        raise InputError(f"{path}: {exc}") from None  # an unknown codec, or one contradicting a BOM
    # A BOM stays in the text as U+FEFF (offsets match the bytes), so it is plain UTF-8 here.
    return "utf-8" if declared in ("utf-8", "utf-8-sig") else declared


def decode_source(path: Path, data: bytes) -> str:
    """A source file's bytes as text, in its encoding (see `source_encoding`)."""
    encoding = source_encoding(path, data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        declared = "UTF-8" if encoding == "utf-8" else f"{encoding} (as its coding line declares)"
        raise InputError(f"{path} is not {declared} text (invalid byte at offset {exc.start})") from None


def encode_source(path: Path, text: str) -> bytes:
    """`text` as the bytes of `path`, in the encoding the text itself declares (see
    `source_encoding`): a file keeps its PEP 263 encoding through an edit."""
    encoding = source_encoding(path, "\n".join(text.split("\n", 2)[:2]).encode("utf-8"))
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise InputError(f"{path}: {text[exc.start:exc.end]!r} cannot be written in {encoding}, "
                         "the encoding its coding line declares") from None


def newline_style(text: str) -> str:
    """The file's dominant line ending, so inserted code matches it."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def splice_fill(text: str, start: int, end: int, fill: str) -> str:
    """`text` with `fill` in place of text[start:end], in the file's newline style; a fill that
    replaces whole lines keeps the line break after it. At the end of the file the fill's trailing
    blank lines and spaces go: a file does not end in blank lines (pycodestyle W391)."""
    fill = fill.replace("\r\n", "\n")
    if not text[end:].strip() and fill.strip():
        fill = fill.rstrip() + ("\n" if fill.rstrip(" \t").endswith("\n") and not text[end:] else "")
    at_line_start = end == len(text) or text[end - 1 : end] in ("\n", "")
    if fill and at_line_start and start > 0 and text[start - 1] == "\n" and not fill.endswith("\n"):
        fill += "\n"
    return text[:start] + fill.replace("\n", newline_style(text)) + text[end:]


@dataclass(frozen=True)
class FileMeta:
    """What a rewrite must carry over besides the bytes: permission bits, owner and group."""

    mode: int
    uid: int
    gid: int

    @classmethod
    def of(cls, path: Path) -> "FileMeta | None":
        """The file's metadata, or None when there is no file."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return cls(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    def give_to(self, path: Path) -> None:
        # The replacement file is created by us: without chown, root editing a user's file would
        # leave it owned by root. Only root (or an owner choosing one of its groups) may chown;
        # otherwise the file becomes ours, as with any editor that writes a new file.
        st = path.stat()
        if (st.st_uid, st.st_gid) != (self.uid, self.gid):
            try:
                os.chown(path, self.uid, self.gid)
            except PermissionError:
                pass
        os.chmod(path, self.mode)  # after chown, which may clear set-id bits


def check_writable(path: Path) -> None:
    """Refuse a file marked read-only. Replacing it through a temporary file would succeed (that
    needs only the directory), so the mode is asked directly; root passes `os.access`, hence the
    write bits too."""
    meta = FileMeta.of(path)
    if meta is not None and (not meta.mode & 0o222 or not os.access(path, os.W_OK)):
        raise InputError(f"{path}: read-only; not writing it (make it writable first, e.g. chmod u+w)")


def atomic_write(path: Path, data: bytes, meta: FileMeta | None = None) -> None:
    """Replace `path` with `data` atomically, keeping its permission bits, owner and group (or
    giving it `meta`'s); a new file gets 0644."""
    meta = meta or FileMeta.of(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".dcode-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if meta is None:
            os.chmod(tmp, 0o644)  # mkstemp's 0600 is for the temporary file, not for the result
        else:
            meta.give_to(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_unchanged(path: Path, expected_hash: str, shown: str) -> bytes:
    """The bytes of a file a pending change was made from, or an error if they differ from what
    was read then (`shown` names the file). Repeating the command cannot help then: the change
    itself is stale."""
    data = read_bytes(path)
    if content_hash(data) != expected_hash:
        raise InputError(f"{shown}: changed since dcode read it, so the pending change no longer applies; "
                         "`dcode reject` drops it (then fill, write or `hook run` again)")
    return data
