"""A tokenizer that needs no vocabulary: a token is a piece of text, and its id is the piece
itself as a number. A remote server's tokens become ids without knowing its vocabulary, a
pending proposal's ids decode the same in the next process, and encode, decode and char_spans
agree by construction. Text the server did not split (or that dcode re-encodes) is split locally
into runs of whitespace, words and single symbols, roughly as a code BPE would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

LOCAL_SPLIT = re.compile(r"\s+|\w+|[^\w\s]")


def piece_id(piece: str) -> int:
    # The leading 1 byte keeps a piece's leading NUL bytes (and makes "" a valid id).
    return int.from_bytes(b"\x01" + piece.encode("utf-8"), "big")


def piece_text(token: int) -> str:
    return token.to_bytes((token.bit_length() + 7) // 8, "big")[1:].decode("utf-8", errors="replace")


class PieceTokenizer:
    """The parts of dcode's tokenizer interface the workflow and the UI use."""

    special_ids: frozenset[int] = frozenset()
    stop_ids: frozenset[int] = frozenset()

    def encode(self, text: str) -> list[int]:
        return [piece_id(m.group()) for m in LOCAL_SPLIT.finditer(text)]

    def from_pieces(self, pieces: Sequence[str]) -> list[int]:
        return [piece_id(p) for p in pieces]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(piece_text(i) for i in ids)

    def token_bytes(self, token: int) -> bytes:
        return piece_text(token).encode("utf-8")

    def char_spans(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        spans, at = [], 0
        for i in ids:
            end = at + len(piece_text(i))
            spans.append((at, end))
            at = end
        return spans


def carry(text: str, spans: Sequence[tuple[int, int]], confidences: Sequence[float]) -> tuple[list[str], list[float]]:
    """(pieces, confidences) for `text`: the server's own tokens when its spans tile the text, else
    the local split, each piece taking the lowest confidence of the server tokens it overlaps."""
    if spans and spans[0][0] == 0 and spans[-1][1] == len(text) and all(a[1] == b[0] for a, b in zip(spans, spans[1:])):
        return [text[a:b] for a, b in spans], list(confidences)
    pieces, conf = [], []
    for m in LOCAL_SPLIT.finditer(text):
        over = [c for (a, b), c in zip(spans, confidences) if a < m.end() and b > m.start()]
        pieces.append(m.group())
        conf.append(min(over) if over else 1.0)
    return pieces, conf
