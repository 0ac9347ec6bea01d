"""Choosing context chunks within a token budget, in score order.

Candidates are taken best first, each in its fullest form that fits in what the better ones left (a
full form may not take more than MAX_CHUNK_SHARE of the chunk budget; the smallest may use all
that is left). A candidate made of independent pieces (the file's import statements) that does
not fit whole keeps as many of its first pieces as fit, rather than leave its room to lower-scored
chunks. So a chunk is dropped only when not even its smallest form fits in what every better chunk
left; each one dropped is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dcode.context.budget import CHARS_PER_TOKEN_MAX, CountTokens, most_that_fit
from dcode.context.result import Chunk

MAX_CHUNK_SHARE = 0.4  # one chunk may not take more of the chunk budget than this in full form
MAX_DROPPED_RECORDED = 40


@dataclass
class Candidate:
    key: tuple[str, int, int]
    path: str
    reason: str
    score: float
    forms: Callable[[], list[tuple[str, str]]]  # [(text, reason suffix)], fullest first
    lines: tuple[int, int] | None = None
    span: tuple[int, int] | None = None  # bytes of the target file it shows (None: another file)
    pieces: list[str] = field(default_factory=list)  # the text as pieces to keep the first of, best first


def select(
    cands: list[Candidate], budget: int, count: CountTokens
) -> tuple[list[tuple[Chunk, Candidate]], list[Chunk], int]:
    """(chosen chunks with their candidates, dropped chunks recorded, how many more were dropped),
    `cands` being sorted best first."""
    chosen: list[tuple[Chunk, Candidate]] = []
    dropped: list[Chunk] = []
    unrecorded = 0
    remaining = budget
    max_single = max(1, int(budget * MAX_CHUNK_SHARE))
    for cand in cands:
        forms = cand.forms() if remaining > 0 or len(dropped) < MAX_DROPPED_RECORDED else []
        chunk = _place(cand, forms, remaining, max_single, count) if remaining > 0 else None
        if chunk is not None:
            chosen.append((chunk, cand))
            remaining -= chunk.tokens
        elif len(dropped) < MAX_DROPPED_RECORDED:
            text, suffix = forms[-1]
            dropped.append(Chunk(cand.path, text, cand.reason + suffix, cand.score, count(text), cand.lines))
        else:
            unrecorded += 1
    return chosen, dropped, unrecorded


def _place(cand: Candidate, forms: list[tuple[str, str]], remaining: int, max_single: int,
           count: CountTokens) -> Chunk | None:
    for position, (text, suffix) in enumerate(forms):
        # A full form may not hog the chunk budget; the last (smallest) may use what is left.
        cap = remaining if position == len(forms) - 1 else min(remaining, max_single)
        if len(text) > cap * CHARS_PER_TOKEN_MAX:
            continue  # cannot fit whatever the tokenizer: do not pay for counting it
        tokens = count(text)
        if tokens <= cap:
            return Chunk(cand.path, text, cand.reason + suffix, cand.score, tokens, cand.lines)
    if not cand.pieces:
        return None
    most = len(cand.pieces)
    while most > 1 and sum(map(len, cand.pieces[:most])) > remaining * CHARS_PER_TOKEN_MAX:
        most -= 1  # as above: no counting of text that cannot fit
    kept, text, tokens = most_that_fit(lambda n: "".join(cand.pieces[:n]), most, remaining, count)
    if not kept:
        return None
    reason = f"{cand.reason} (the first {kept} of {len(cand.pieces)})"
    return Chunk(cand.path, text, reason, cand.score, tokens)  # not one span of lines any more
