"""A proposed edit: one hole in one file, its completion, and what is needed to refine or apply it.

The pending proposal lives in `<state dir>/pending.json` (see `journal.state_dir`) so that
`dcode refine`, `accept` and `reject` can act on it from later invocations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dcode.diffusion.engine import Completion
from dcode.diffusion.sampler import DecodeStats
from dcode.edit.files import atomic_write, check_unchanged, content_hash, splice_fill
from dcode.edit.journal import Journal, JournalEntry, state_dir
from dcode.errors import InputError


@dataclass
class Proposal:
    path: Path  # absolute path of the edited file
    root: Path  # repository root (where the state dir is)
    rel_path: str  # path shown to the model and in diffs
    file_hash: str  # sha256 of the file's bytes when it was read
    start: int  # hole, character offsets into the file's text
    end: int
    kind: str  # what the target was (marker, stub, line, symbol, ...)
    model: str  # which model made it (refine must use the same one)
    token_ids: list[int]
    confidences: list[float]
    fill: str  # completion text as the model produced it
    context: list[tuple[str, str]] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    passes: int = 1  # generation + refinement passes so far
    parses: bool = True  # the edited file parses (no more syntax errors than before)
    problem: str | None = None  # why it is not verified ("does not parse", ...); None when it is
    instruction: str | None = None  # the user's instruction, which refine keeps using
    notes: list[str] = field(default_factory=list)

    # -- text -----------------------------------------------------------------------------
    def original_text(self) -> str:
        """The file as read; refuses if it changed on disk since."""
        return check_unchanged(self.path, self.file_hash).decode("utf-8")

    def prefix(self, text: str) -> str:
        return text[: self.start]

    def suffix(self, text: str) -> str:
        return text[self.end :]

    def new_text(self, text: str) -> str:
        return splice_fill(text, self.start, self.end, self.fill)

    def completion(self) -> Completion:
        return Completion(self.fill, list(self.token_ids), list(self.confidences), DecodeStats(**{
            k: self.stats[k] for k in ("forward_passes", "tokens", "wall_s") if k in self.stats
        }))

    def with_completion(self, result: Completion) -> "Proposal":
        stats = result.stats.as_dict()
        return Proposal(**{**self.__dict__, "token_ids": result.token_ids, "confidences": result.confidences,
                           "fill": result.text, "stats": stats, "passes": self.passes + 1})

    # -- persistence ------------------------------------------------------------------------
    def to_json(self) -> dict:
        data = asdict(self)
        data["path"], data["root"] = str(self.path), str(self.root)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Proposal":
        data = dict(data)
        data["path"], data["root"] = Path(data["path"]), Path(data["root"])
        data["context"] = [tuple(c) for c in data.get("context", [])]
        return cls(**data)


def pending_path(root: Path) -> Path:
    return state_dir(root) / "pending.json"


def save_pending(proposal: Proposal) -> None:
    path = pending_path(proposal.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(proposal.to_json()).encode("utf-8"))


def load_pending(root: Path) -> Proposal:
    path = pending_path(root)
    if not path.is_file():
        raise InputError("no pending proposal here: run `dcode fill TARGET` or `dcode write TARGET` first")
    try:
        return Proposal.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: unreadable pending proposal ({exc}); run `dcode reject`") from None


def clear_pending(root: Path) -> bool:
    path = pending_path(root)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed


def apply_proposal(proposal: Proposal, command: str) -> JournalEntry:
    """Write the proposal into its file (journal entry first, atomic, hash-checked)."""
    text = proposal.original_text()
    new = proposal.new_text(text).encode("utf-8")
    entry = Journal(proposal.root).apply(command, {proposal.path: (proposal.file_hash, new)})
    return entry


