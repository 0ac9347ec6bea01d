"""A hole located in a file's text: `Target` with the `Scope`s around it, and the character /
UTF-8 byte offsets between which tree-sitter (bytes) and edits (characters) translate.

Context assembly reads targets, editing makes and fills them; both build on this module.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcode.context.languages import Language

TARGET_KINDS = ("line", "range", "symbol", "marker", "stub", "syntax_error", "position")


@dataclass
class Scope:
    """An enclosing definition. Offsets are characters into the target's text."""

    kind: str
    name: str
    signature: str
    start: int
    end: int
    qualname: str = ""
    doc: str | None = None
    header_end: int = 0  # end of the signature and docstring / opening brace

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "qualname": self.qualname, "signature": self.signature,
                "doc": self.doc, "start": self.start, "end": self.end}  # fmt: skip


@dataclass
class Target:
    """A hole `text[start:end]` in `path` (character offsets; `*_byte` are UTF-8 byte offsets)."""

    path: Path
    text: str
    start: int
    end: int
    start_byte: int
    end_byte: int
    kind: str
    language: Language
    scopes: list[Scope] = field(default_factory=list)
    hint: str | None = None
    indent: str = ""
    symbol: str | None = None  # qualified name for symbol and stub targets
    detail: str | None = None  # e.g. "missing ';'" for a syntax error

    @property
    def hole(self) -> str:
        return self.text[self.start : self.end]

    @property
    def line_range(self) -> tuple[int, int]:
        """1-based first and last line of the hole (an empty hole is on one line)."""
        first = self.text.count("\n", 0, self.start) + 1
        last_char = max(self.start, self.end - 1)
        return first, self.text.count("\n", 0, last_char) + 1

    def describe(self) -> str:
        first, last = self.line_range
        lines = f"{first}" if first == last else f"{first}-{last}"
        where = f" in {self.scopes[-1].qualname or self.scopes[-1].name}" if self.scopes else ""
        extra = f": {self.detail}" if self.detail else (f": {self.hint}" if self.hint else "")
        return f"{self.path}:{lines} {self.kind.replace('_', ' ')}{where}{extra}"

    def to_dict(self) -> dict[str, Any]:
        first, last = self.line_range
        return {
            "path": str(self.path), "kind": self.kind, "language": self.language.name, "start": self.start,
            "end": self.end, "start_byte": self.start_byte, "end_byte": self.end_byte, "lines": [first, last],
            "indent": self.indent, "hint": self.hint, "symbol": self.symbol, "detail": self.detail,
            "scopes": [s.to_dict() for s in self.scopes],
        }  # fmt: skip


class TextOffsets:
    """Convert between character and UTF-8 byte offsets of one text (identity for ASCII)."""

    def __init__(self, text: str, data: bytes | None = None) -> None:
        self.text = text
        self.data = data if data is not None else text.encode("utf-8")
        self.identity = len(self.data) == len(text)
        self.line_chars = [0] + [m.end() for m in re.finditer("\n", text)]
        self._line_bytes: list[int] | None = None

    @property
    def line_bytes(self) -> list[int]:
        if self._line_bytes is None:
            if self.identity:
                self._line_bytes = self.line_chars
            else:
                self._line_bytes = [0] + [m.end() for m in re.finditer(b"\n", self.data)]
        return self._line_bytes

    def to_byte(self, char: int) -> int:
        if self.identity:
            return char
        line = bisect.bisect_right(self.line_chars, char) - 1
        return self.line_bytes[line] + len(self.text[self.line_chars[line] : char].encode("utf-8"))

    def to_char(self, byte: int) -> int:
        if self.identity:
            return byte
        line = bisect.bisect_right(self.line_bytes, byte) - 1
        return self.line_chars[line] + len(self.data[self.line_bytes[line] : byte].decode("utf-8", "replace"))

    @property
    def line_count(self) -> int:
        """Lines as an editor numbers them: a final line break does not start a new line."""
        if not self.text:
            return 0
        return len(self.line_chars) - (1 if self.text.endswith("\n") else 0)

    def line_span(self, line: int) -> tuple[int, int]:
        """Character span of 1-based `line`, including its line break."""
        start = self.line_chars[line - 1]
        end = self.line_chars[line] if line < len(self.line_chars) else len(self.text)
        return start, end

    def line_start(self, char: int) -> int:
        return self.line_chars[bisect.bisect_right(self.line_chars, char) - 1]

    def line_end(self, char: int) -> int:
        """Offset just past the line break of the line containing `char` (or the text's end)."""
        line = bisect.bisect_right(self.line_chars, char)
        return self.line_chars[line] if line < len(self.line_chars) else len(self.text)


def indent_of_line(text: str, offsets: TextOffsets, char: int) -> str:
    start = offsets.line_start(char)
    match = re.match(r"[ \t]*", text[start:])
    return match.group() if match else ""


def indent_unit(text: str) -> str:
    """The file's indentation step: a tab if lines start with tabs, else the smallest space indent."""
    if re.search(r"^\t", text, re.M):
        return "\t"
    widths = {len(m.group(1)) for m in re.finditer(r"^( +)\S", text, re.M)}
    smallest = min(widths) if widths else 4
    return " " * (smallest if smallest in (2, 3, 4, 8) else 4)
