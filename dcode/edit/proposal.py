"""A proposed edit: one hole in one file, its completion, and what is needed to refine or apply it.

The pending proposal lives in `<state dir>/pending.json` (see `journal.state_dir`) so that
`dcode refine`, `accept` and `reject` can act on it from later invocations. The hook's fix-ups
kept for later are pending there too, as a `Change` of several files (accept and reject only).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dcode.diffusion.engine import Completion
from dcode.diffusion.sampler import DecodeStats
from dcode.edit.change import Change, FileEdit, apply_change
from dcode.edit.files import atomic_write, check_unchanged, decode_source, splice_fill
from dcode.edit.journal import state_dir
from dcode.errors import InputError


def line_count(text: str) -> int:
    """Lines as an editor numbers them: a last line without a newline counts."""
    return text.count("\n") + (0 if text.endswith("\n") or not text else 1)


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
        return decode_source(self.path, check_unchanged(self.path, self.file_hash, self.rel_path))

    def prefix(self, text: str) -> str:
        return text[: self.start]

    def suffix(self, text: str) -> str:
        return text[self.end :]

    def new_text(self, text: str) -> str:
        return splice_fill(text, self.start, self.end, self.fill)

    def file_lines(self, text: str) -> tuple[int, int]:
        """The lines of the edited file (1-based, inclusive) the fill occupies, as the diff and
        the uncertain-lines report number them."""
        first = text.count("\n", 0, self.start) + 1
        return first, first + max(line_count(self.fill), 1) - 1

    def fill_lines(self, text: str, lines: tuple[int, int]) -> tuple[int, int]:
        """File lines `lines` as lines of the fill, which is what refine regenerates."""
        first, last = self.file_lines(text)
        a, b = lines
        if a < first or b > last:
            covered = f"line {first}" if first == last else f"lines {first}-{last}"
            raise InputError(f"lines {a}-{b} are outside the proposal: it covers {covered} of {self.rel_path}")
        return a - first + 1, b - first + 1

    def change(self, command: str) -> Change:
        """This proposal as a one-file change, to review and apply."""
        text = self.original_text()
        return Change(self.root, command, [FileEdit(self.path, self.rel_path, self.file_hash, self.new_text(text))])

    def completion(self) -> Completion:
        return Completion(self.fill, list(self.token_ids), list(self.confidences), DecodeStats(**{
            k: self.stats[k] for k in ("forward_passes", "tokens", "wall_s") if k in self.stats
        }))

    def with_completion(self, result: Completion) -> "Proposal":
        # The sampler counts every slot it committed, pads included; the user is told about the
        # tokens of the text.
        stats = dataclasses.replace(result.stats, tokens=len(result.token_ids)).as_dict()
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


def save_pending(pending: Proposal | Change) -> None:
    path = pending_path(pending.root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(pending.to_json()).encode("utf-8"))


def load_pending(root: Path) -> Proposal | Change:
    path = pending_path(root)
    if not path.is_file():
        raise InputError("no pending proposal here: run `dcode fill TARGET` or `dcode write TARGET` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Change.from_json(data) if "change" in data else Proposal.from_json(data)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: unreadable pending proposal ({exc}); run `dcode reject`") from None


def load_proposal(root: Path) -> Proposal:
    """The pending fill or write; the hook's pending fix-ups cannot be refined or edited."""
    pending = load_pending(root)
    if isinstance(pending, Change):
        raise InputError("the pending change is the hook's fix-ups: `dcode accept` (`--hunks`) or `dcode reject` it")
    return pending


def clear_pending(root: Path) -> bool:
    path = pending_path(root)
    existed = path.is_file()
    path.unlink(missing_ok=True)
    return existed


def apply_proposal(proposal: Proposal, command: str) -> list[tuple[FileEdit, str]]:
    """Write the proposal into its file (journal entry first, atomic, hash-checked); returns what
    `apply_change` does."""
    return apply_change(proposal.change(command))


