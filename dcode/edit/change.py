"""A change to one or more files as the user reviews it: its diff, its hunks, and applying all of
it or only some hunks.

Hunks are numbered from 1 in the order the diff shows them, across all the change's files, with
the grouping `unified_diff` uses (3 lines of context), so "hunk 2" is the second `@@` the user
saw. When a change has more than one hunk, each `@@` line carries its number after the closing
`@@` (where git puts a function name; `git apply` ignores it).

A pending change of several files (the hook's fix-ups kept for later) is stored as a `Change`;
a pending fill or write is a `Proposal` (`proposal.py`), which makes a one-file `Change` when it
is applied.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from dcode.edit.files import check_unchanged, decode_source, encode_source
from dcode.edit.journal import Journal
from dcode.errors import InputError

CONTEXT_LINES = 3  # unified_diff's context: the same grouping gives the same hunks


def unified_diff(rel_path: str, old: str, new: str) -> str:
    """A `git apply`-compatible unified diff (with the no-newline-at-end marker)."""
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    out: list[str] = []
    for line in difflib.unified_diff(old_lines, new_lines, f"a/{rel_path}", f"b/{rel_path}", n=CONTEXT_LINES):
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


@dataclass
class FileEdit:
    """One file of a change: the file as read (by its hash) and the text proposed for it."""

    path: Path  # absolute
    rel_path: str  # as the diff and messages show it
    file_hash: str  # sha256 of the bytes when they were read
    new_text: str

    def old_text(self) -> str:
        """The file as read; refuses when it changed on disk since."""
        return decode_source(self.path, check_unchanged(self.path, self.file_hash, self.rel_path))


@dataclass
class Change:
    """Edits to several files that are reviewed, applied and undone together."""

    root: Path  # repository root (where the state dir and the journal are)
    command: str  # what the undo journal calls it
    files: list[FileEdit]

    def texts(self) -> list[tuple[FileEdit, str]]:
        """Each edit with its file's current text (all checked before anything is used)."""
        return [(edit, edit.old_text()) for edit in self.files]

    def diff(self) -> str:
        return numbered_diff([(edit.rel_path, old, edit.new_text) for edit, old in self.texts()])

    def hunk_count(self) -> int:
        return sum(count_hunks(old, edit.new_text) for edit, old in self.texts())

    def to_json(self) -> dict:
        return {"change": {"root": str(self.root), "command": self.command, "files": [
            {"path": str(f.path), "rel_path": f.rel_path, "file_hash": f.file_hash, "new_text": f.new_text}
            for f in self.files
        ]}}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> "Change":
        data = data["change"]
        files = [FileEdit(Path(f["path"]), f["rel_path"], f["file_hash"], f["new_text"]) for f in data["files"]]
        return cls(Path(data["root"]), data["command"], files)


def _lines(old: str, new: str) -> tuple[list[str], list[str]]:
    return old.splitlines(keepends=True), new.splitlines(keepends=True)


def count_hunks(old: str, new: str) -> int:
    a, b = _lines(old, new)
    return sum(1 for _ in difflib.SequenceMatcher(None, a, b).get_grouped_opcodes(CONTEXT_LINES))


def apply_hunks(old: str, new: str, chosen: Collection[int]) -> str:
    """`old` with only the chosen hunks (numbered from 1) of its diff to `new` applied."""
    a, b = _lines(old, new)
    matcher = difflib.SequenceMatcher(None, a, b)
    # A copy first: get_grouped_opcodes trims the matcher's own list of opcodes in place.
    opcodes = list(matcher.get_opcodes())
    groups = matcher.get_grouped_opcodes(CONTEXT_LINES)
    taken = {op for number, group in enumerate(groups, 1) if number in chosen for op in group if op[0] != "equal"}
    out: list[str] = []
    for op in opcodes:
        _, i1, i2, j1, j2 = op
        out += b[j1:j2] if op in taken else a[i1:i2]
    return "".join(out)


def hunks_in(diff: str) -> int:
    """How many hunks a unified diff shows."""
    return sum(row.startswith("@@") for row in diff.splitlines())


def numbered_diff(files: list[tuple[str, str, str]]) -> str:
    """The unified diff of (path, old, new) per file, its hunks numbered when there are several."""
    diff = "".join(unified_diff(path, old, new) for path, old, new in files)
    if hunks_in(diff) < 2:
        return diff
    out, number = [], 0
    for row in diff.splitlines(keepends=True):
        if row.startswith("@@"):
            number += 1
            row = row.rstrip("\n") + f" hunk {number}\n"
        out.append(row)
    return "".join(out)


def parse_hunks(text: str) -> set[int]:
    """Hunk numbers as a user types them: `1,3`, `2-4`, `1 3`."""
    chosen: set[int] = set()
    for part in text.replace(",", " ").split():
        first, _, last = part.partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            raise InputError(f"hunks {text!r}: expected numbers such as 1,3 or 2-4") from None
        if a < 1 or b < a:
            raise InputError(f"hunks {text!r}: numbers start at 1, ranges go up (2-4)")
        chosen.update(range(a, b + 1))
    if not chosen:
        raise InputError("no hunk chosen: give numbers such as 1,3")
    return chosen


def check_hunks(hunks: set[int], total: int) -> set[int]:
    """The chosen hunks, when the change has them all."""
    if wrong := sorted(h for h in hunks if h > total):
        raise InputError(f"there is no hunk {wrong[0]}: the change has {total} (numbered as the diff shows them)")
    return hunks


def apply_change(change: Change, hunks: set[int] | None = None) -> list[tuple[FileEdit, str]]:
    """Write the change (all of it, or only the chosen hunks) through one undo-journal entry, so
    `dcode undo` restores exactly what was written. Returns each written file as an edit holding
    the text written, with the file's text before."""
    texts = change.texts()
    counts = [count_hunks(old, edit.new_text) for edit, old in texts]
    if hunks is not None:
        check_hunks(hunks, sum(counts))
    written: list[tuple[FileEdit, str]] = []
    offset = 0
    for (edit, old), count in zip(texts, counts):
        if hunks is None:
            new = edit.new_text
        else:
            new = apply_hunks(old, edit.new_text, {h - offset for h in hunks if offset < h <= offset + count})
        offset += count
        if hunks is None or new != old:
            written.append((FileEdit(edit.path, edit.rel_path, edit.file_hash, new), old))
    Journal(change.root).apply(change.command, {e.path: (e.file_hash, encode_source(e.path, e.new_text))
                                                for e, _ in written})
    return written
