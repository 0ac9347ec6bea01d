"""Drafts copied from the text around the hole (prompt lookup decoding).

Code repeats itself: a name defined above, an argument list, the suffix's next line. After a
branch's newest tokens, the most recent place where the same `n` tokens occur (in the prompt, the
suffix's first lines, or the branch itself) is looked up, and the tokens that followed there are
the draft. The base verifies a draft as it verifies the trained drafter's (anchored decoding keeps
only the tokens equal to its own choices), so a draft changes how many passes a hole takes, never
its text, and costs no forward of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

NGRAM_SIZES = (3, 2)  # longest match first; one token alone matches too often to pay for a draft


class ContextLookup:
    """Where each n-gram of the hole's surroundings last occurred."""

    def __init__(self, before: Sequence[int], after: Sequence[int]) -> None:
        """before: the tokens the base reads before the hole; after: the suffix's first tokens."""
        self.source = list(before) + list(after)
        self.prompt_end = list(before)[-max(NGRAM_SIZES) :]  # what a short branch's n-gram starts with
        self.last: dict[tuple[int, ...], int] = {}  # n-gram -> where the token after it is
        for n in NGRAM_SIZES:
            for end in range(n, len(self.source)):
                self.last[tuple(self.source[end - n : end])] = end

    def draft(self, branch: Sequence[int], k: int) -> list[int]:
        """Up to `k` tokens that followed the latest earlier occurrence of the branch's newest
        tokens (the prompt's last ones count while the branch is short); [] when none."""
        history = self.prompt_end + list(branch)
        for n in NGRAM_SIZES:
            if len(history) < n:
                continue
            key = history[-n:]
            own = _latest(branch, key)
            if own is not None:
                return list(branch[own : own + k])
            end = self.last.get(tuple(key))
            if end is not None:
                return self.source[end : end + k]
        return []


def _latest(seq: Sequence[int], key: list[int]) -> int | None:
    """Where the token after the latest occurrence of `key` in `seq` is, the occurrence at the very
    end excluded (it has nothing after it yet)."""
    n = len(key)
    for end in range(len(seq) - 1, n - 1, -1):
        if list(seq[end - n : end]) == key:
            return end
    return None
