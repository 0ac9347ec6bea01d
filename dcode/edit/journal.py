"""The undo journal: one JSON entry per applied change, holding each file's previous bytes and
its mode, owner and group.

Kept in `.git/dcode/journal/` inside a git repository (works without any commit), else in
`$XDG_STATE_HOME/dcode/<hash of the directory>/journal/`. `undo` restores the newest entry's
files and removes the entry, so repeated `undo` walks several steps back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dcode.edit.files import FileMeta, atomic_write, check_writable, content_hash, read_bytes
from dcode.errors import InputError


def state_dir(root: Path) -> Path:
    """Where dcode keeps the pending proposal and the journal for the project at `root`."""
    git_dir = root / ".git"
    if git_dir.is_dir():
        return git_dir / "dcode"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "dcode" / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


@dataclass
class FileChange:
    path: Path
    before: bytes | None  # None: the file did not exist
    after_hash: str
    meta: FileMeta | None = None  # what undo gives the file back (None: the file did not exist)


@dataclass
class JournalEntry:
    id: str
    command: str
    time: float
    files: list[FileChange]

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "command": self.command,
            "time": self.time,
            "files": [
                {
                    "path": str(f.path),
                    "before": None if f.before is None else base64.b64encode(f.before).decode("ascii"),
                    "after_hash": f.after_hash,
                    "meta": None if f.meta is None else [f.meta.mode, f.meta.uid, f.meta.gid],
                }
                for f in self.files
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> "JournalEntry":
        files = [
            FileChange(
                Path(f["path"]),
                None if f["before"] is None else base64.b64decode(f["before"]),
                f["after_hash"],
                FileMeta(*f["meta"]) if f.get("meta") else None,  # entries written before dcode kept it
            )
            for f in data["files"]
        ]
        return cls(data["id"], data["command"], data["time"], files)


class Journal:
    def __init__(self, root: Path) -> None:
        self.dir = state_dir(root) / "journal"

    def entries(self) -> list[Path]:
        return sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []

    def record(self, command: str, changes: list[FileChange]) -> JournalEntry:
        self.dir.mkdir(parents=True, exist_ok=True)
        entry_id = f"{time.time_ns():020d}"
        entry = JournalEntry(entry_id, command, time.time(), changes)
        atomic_write(self.dir / f"{entry_id}.json", json.dumps(entry.to_json()).encode())
        return entry

    def apply(self, command: str, writes: dict[Path, tuple[str, bytes]]) -> JournalEntry:
        """Write each file (path -> (hash it had when read, new bytes)), journal first.

        All files are checked before any is written, so a refusal changes nothing.
        """
        changes: list[FileChange] = []
        for path, (read_hash, new) in writes.items():
            current = read_bytes(path) if path.exists() else None
            current_hash = content_hash(current) if current is not None else ""
            if current_hash != read_hash:
                raise InputError(f"{path}: changed since dcode read it; not overwriting (run the command again)")
            check_writable(path)
            changes.append(FileChange(path.resolve(), current, content_hash(new), FileMeta.of(path)))
        entry = self.record(command, changes)
        for path, (_, new) in writes.items():
            atomic_write(path, new)
        return entry

    def undo(self, force: bool = False) -> JournalEntry:
        """Restore the newest entry's files; refuse if they changed since dcode wrote them."""
        entries = self.entries()
        if not entries:
            raise InputError("nothing to undo: no change applied by dcode is recorded here")
        entry = JournalEntry.from_json(json.loads(entries[-1].read_text(encoding="utf-8")))
        if not force:
            for f in entry.files:
                now = read_bytes(f.path) if f.path.exists() else b""
                if content_hash(now) != f.after_hash:
                    raise InputError(f"{f.path}: edited since dcode changed it; undo would lose that (use --force)")
        for f in entry.files:
            if f.before is None:
                f.path.unlink(missing_ok=True)
            else:
                atomic_write(f.path, f.before, f.meta)
        entries[-1].unlink()
        return entry
