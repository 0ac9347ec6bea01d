"""Fitting text to a token budget: whole lines first, counted with the model's own tokenizer."""

from __future__ import annotations

from collections.abc import Callable

CountTokens = Callable[[str], int]
CHARS_PER_TOKEN_MAX = 8  # no tokenizer packs more than this on code; bounds how much text we count


def fit_text(text: str, budget: int, count_tokens: CountTokens, keep: str) -> tuple[str, int]:
    """The longest run of whole lines from the `keep` end ("start"/"end") within `budget` tokens.

    Falls back to part of a line only when not even one line fits. Counting is by binary search
    on the joined text (tokenizers are not additive), over at most budget*CHARS_PER_TOKEN_MAX chars.
    """
    if budget <= 0 or not text:
        return "", 0
    limit = budget * CHARS_PER_TOKEN_MAX
    if len(text) <= limit:
        tokens = count_tokens(text)
        if tokens <= budget:
            return text, tokens
    window = text[-limit:] if keep == "end" else text[:limit]
    lines = window.splitlines(keepends=True) if "\n" in window else [window]
    if len(window) < len(text) and len(lines) > 1:
        lines = lines[1:] if keep == "end" else lines[:-1]  # drop the partial line at the cut

    def take(n: int) -> str:
        return "".join(lines[-n:] if keep == "end" else lines[:n]) if n else ""

    kept, text, tokens = most_that_fit(take, len(lines), budget, count_tokens)
    if kept:
        return text, tokens
    return _fit_chars(lines[-1] if keep == "end" else lines[0], budget, count_tokens, keep)


def most_that_fit(take: Callable[[int], str], most: int, budget: int, count_tokens: CountTokens) -> tuple[int, str, int]:
    """(n, take(n), its tokens) for the largest n <= `most` whose text fits `budget` tokens; n is
    0 when not even take(1) fits. Binary search: take(n) must grow with n."""
    low, high, best = 1, most, (0, "", 0)
    while low <= high:
        mid = (low + high) // 2
        candidate = take(mid)
        tokens = count_tokens(candidate)
        if tokens <= budget:
            best, low = (mid, candidate, tokens), mid + 1
        else:
            high = mid - 1
    return best


def _fit_chars(line: str, budget: int, count_tokens: CountTokens, keep: str) -> tuple[str, int]:
    low, high, best = 1, len(line), ("", 0)
    while low <= high:
        mid = (low + high) // 2
        candidate = line[-mid:] if keep == "end" else line[:mid]
        tokens = count_tokens(candidate)
        if tokens <= budget:
            best, low = (candidate, tokens), mid + 1
        else:
            high = mid - 1
    return best
