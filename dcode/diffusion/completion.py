"""What a decoder returns (`Completion`) and what it is given (`Prompt`), with token healing's
two helpers: shared by the diffusion loop (engine) and the anchored decoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dcode.diffusion.sampler import DecodeStats, HoleState
from dcode.errors import InputError

if TYPE_CHECKING:
    from dcode.diffusion.endings import Ending


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    confidences: list[float]
    stats: DecodeStats
    deadline_hit: bool = False
    endings: list[Ending] = field(default_factory=list)  # anchored decoding: the scored candidates

    def cut(self, chars: int, tokenizer) -> "Completion":
        """The first `chars` characters of the text, as whole tokens (one straddling the cut goes)."""
        keep = sum(1 for _, end in tokenizer.char_spans(self.token_ids) if end <= chars)
        ids = self.token_ids[:keep]
        return dataclasses.replace(self, text=tokenizer.decode(ids), token_ids=ids, confidences=self.confidences[:keep])

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "tokens": len(self.token_ids),
            "mean_confidence": round(sum(self.confidences) / len(self.confidences), 4) if self.confidences else None,
            **self.stats.as_dict(),
        }


@dataclass
class Prompt:
    """Token ids around the hole, and the text the hole must re-cover at each end (token healing)."""

    before: list[int]
    after: list[int]
    lead: str = ""
    trail: str = ""


def heal(tok, prefix_ids: list[int], suffix_ids: list[int]) -> tuple[list[int], list[int], str, str]:
    """Back off the prefix's last token and the suffix's first (ordinary tokens only): the hole
    is then cut at the place BPE chose, not at the caller's character boundary."""
    lead = trail = ""
    if prefix_ids and prefix_ids[-1] not in tok.special_ids:
        lead = tok.decode(prefix_ids[-1:])
        prefix_ids = prefix_ids[:-1]
    if suffix_ids and suffix_ids[0] not in tok.special_ids:
        trail = tok.decode(suffix_ids[:1])
        suffix_ids = suffix_ids[1:]
    return prefix_ids, suffix_ids, lead, trail


def carry_confidences(tok, ids: list[int], conf: list[float], new_ids: list[int], offset: int) -> list[float]:
    """Confidences for `new_ids`, a re-encoding of `decode(ids)[offset:...]`: each new token
    takes the lowest confidence of the old tokens it overlaps (1.0 where it overlaps none)."""
    spans = tok.char_spans(ids)
    out = []
    for s, e in tok.char_spans(new_ids):
        over = [c for (a, b), c in zip(spans, conf) if a < e + offset and b > s + offset]
        out.append(min(over) if over else 1.0)
    return out


def line_bounds(text: str, first: int, last: int) -> tuple[int, int]:
    """Character range of lines first..last (1-based, inclusive) of `text`; a last line without
    a newline counts, and empty text has one (empty) line."""
    n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if first < 1 or last < first or first > n_lines:
        raise InputError(f"lines {first}-{last} are outside the proposal (it has {n_lines} lines)")
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    return starts[first - 1], starts[last] if last < len(starts) else len(text)


def last_completion(stream: Iterator[HoleState | Completion]) -> Completion:
    """Run a decoding stream to its end: its last item, the Completion."""
    result = None
    for result in stream:
        pass
    assert isinstance(result, Completion)
    return result
