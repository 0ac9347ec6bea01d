"""Where a hole may end, read from the text around it, and what the base reads before it: the
parts of anchored decoding (dcode.diffusion.anchored) that are about text, not the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dcode.diffusion.completion import Prompt, heal

SUFFIX_LINES = 2  # non-blank lines of the suffix that score a candidate ending


@dataclass(frozen=True)
class HoleShape:
    """Where a hole may end, read from the text around it."""

    line_start: bool  # the hole starts a line (its lines end with newlines of their own)
    line_head: str  # the cursor line's text before the hole (its indentation sets the block's)
    rest_of_line: str  # the cursor line's text after the hole ("" at a line start or line end)
    max_lines: int | None  # None: a block of any length
    suffix_head: str  # what scores a candidate: the rest of the line and the next non-blank lines

    @property
    def one_line(self) -> bool:
        return self.max_lines == 1 or bool(self.rest_of_line.strip())

    @property
    def anchor(self) -> list[str]:
        return suffix_anchor(self.suffix_head)


def hole_shape(prefix: str, suffix: str, max_lines: int | None = None, suffix_lines: int = SUFFIX_LINES) -> HoleShape:
    line_start = not prefix or prefix.endswith("\n")
    first, _, rest = suffix.partition("\n")
    head = [first + ("\n" if _ or rest else "")]
    count = 1 if first.strip() else 0
    for line in rest.splitlines(keepends=True):
        if count >= suffix_lines:
            break
        head.append(line)
        count += bool(line.strip())
    rest_of_line = "" if line_start else first
    line_head = prefix[prefix.rfind("\n") + 1 :]
    return HoleShape(line_start, line_head, rest_of_line, max_lines, "".join(head) if count else "")


SUFFIX_MATCH_CHARS = 10  # code a match with the suffix's first lines must cover to end a block


def suffix_anchor(suffix: str) -> list[str]:
    """The suffix's first non-blank lines (without line ends) that a block writing them again has
    reached the suffix by: the first, and the second too when the first is short (`)`, `else:`
    and the like are written inside a block as often as after it)."""
    lines = [ln.rstrip() for ln in suffix.splitlines() if ln.strip()]
    anchor = lines[:1]
    if anchor and len(anchor[0].strip()) < SUFFIX_MATCH_CHARS and len(lines) > 1:
        anchor = lines[:2]
    return anchor


def reaches_suffix(text: str, anchor: Sequence[str]) -> int | None:
    """Where a block's text starts writing the suffix's anchor lines again (complete lines after its
    first one, blank lines between them ignored, and whitespace inside them but not their
    indentation): the hole ends there. None when it does not."""
    if not anchor:
        return None
    lines = text.splitlines(keepends=True)
    starts = [sum(map(len, lines[:i])) for i in range(len(lines))]
    complete = [i for i, ln in enumerate(lines) if ln.endswith("\n") and ln.strip()]
    for j, i in enumerate(complete):
        if i == 0 or j + len(anchor) > len(complete):
            continue
        if [_squeezed(lines[k]) for k in complete[j : j + len(anchor)]] == [_squeezed(a) for a in anchor]:
            return starts[i]
    return None


def _squeezed(line: str) -> str:
    """The line's indentation (in Python it says which block the line is in), then its code
    without whitespace."""
    return line[: len(line) - len(line.lstrip())] + "".join(line.split())


def block_ended(text: str, single_line: bool) -> int | None:
    """Where a hole ends without a suffix to look at: after the first line for a one-line hole;
    for a block, before the first non-blank line indented less than its first line (the block is
    over). None while it has not ended."""
    if single_line:
        cut = text.find("\n")
        return cut + 1 if cut >= 0 else None
    lines = text.splitlines(keepends=True)
    body = [line for line in lines if line.strip()]
    if not body:
        return None
    indent = indent_of(body[0])
    offset = 0
    for line in lines[:-1] if not text.endswith("\n") else lines:
        if line.strip() and indent_of(line) < indent:
            return offset
        offset += len(line)
    return None


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip())


def anchored_prompt(
    tok, prefix: str, path: str | None, context: Sequence[tuple[str, str]], budget: int, headed: bool = True
) -> Prompt:
    """What the base reads: context files, the file's header and the prefix, causally, healed;
    the suffix is not in it (the base never saw a suffix first). Context files go first when
    short of room, then the prefix's far end. `headed=False`: the prefix alone."""
    pre, _, lead, _ = heal(tok, tok.encode(prefix), [])
    header = tok.encode_file_header(path or "untitled") if headed else []
    ctx = [tok.encode_file_header(p) + tok.encode(text) for p, text in context]
    while ctx and sum(map(len, ctx)) + len(header) + len(pre) > budget:
        ctx.pop()
    room = max(0, budget - sum(map(len, ctx)) - len(header))
    pre = pre[len(pre) - room :] if len(pre) > room else pre
    before = [i for c in ctx for i in c] + header + pre
    return Prompt(before or [tok.eos_id], [], lead)


def trim_blank_tail(text: str) -> str:
    """Without the blank lines a block ends in (it keeps its last line's newline)."""
    lines = text.splitlines(keepends=True)
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    return "".join(lines)


def nth_line_end(text: str, n: int) -> int:
    offset = 0
    for line in text.splitlines(keepends=True)[:n]:
        offset += len(line)
    return offset
