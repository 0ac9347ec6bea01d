"""A file opened for editing: its parse (see `ParsedFile`) plus its `dcode: fill` markers.

Hole marker: a line whose only content is a comment `dcode: fill` in the language's comment
syntax (`# dcode: fill`, `// dcode: fill`, `/* dcode: fill */`, `-- dcode: fill`); text after it is
a hint. The hole is the whole marker line; generated code takes over the marker's indentation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tree_sitter

from dcode.context.languages import Language, parse
from dcode.context.parsed import ParsedFile
from dcode.context.syntax import is_comment


@dataclass
class Marker:
    """A `dcode: fill` comment line."""

    start: int  # character offsets of the whole line (with its line break)
    end: int
    content_start: int  # where the comment begins on the line
    content_end: int  # end of the line's text before the line break
    indent: str
    hint: str | None
    statement_level: bool = True  # the comment sits where a statement could (not inside a call)


class Document(ParsedFile):
    """A parsed file and its markers, shared by every target form."""

    def __init__(self, path: Path, text: str, lang: Language) -> None:
        super().__init__(path, text, lang)
        self.markers = self._find_markers(self.tree)
        # A marker alone in a Python block leaves the block empty, which misparses everything
        # after it. Parse a copy where each marker comment is replaced, byte for byte, by `pass`.
        if self.tree is not None and lang.name == "python" and self.markers:
            self.source = self._patched_source()
            self.tree = parse(self.source, lang)

    # -- markers -------------------------------------------------------------------------------

    def _marker_pattern(self) -> re.Pattern[str]:
        # `///`, `//!`, `##` and `---` are comments too.
        alternatives = [rf"{re.escape(p)}{re.escape(p[-1])}*!?" for p in self.lang.line_comments]
        body = r"[ \t]*dcode:[ \t]*fill\b(?P<hint{n}>[^\n]*?)"
        parts = [f"(?:{'|'.join(alternatives)}){body.format(n=0)}"] if alternatives else []
        for i, (open_, close) in enumerate(self.lang.block_comments, start=1):
            parts.append(f"{re.escape(open_)}{body.format(n=i)}[ \\t]*{re.escape(close)}")
        return re.compile(rf"^(?P<indent>[ \t]*)(?:{'|'.join(parts)})[ \t]*\r?$", re.M | re.I)

    def _find_markers(self, tree: tree_sitter.Tree | None) -> list[Marker]:
        markers: list[Marker] = []
        for match in self._marker_pattern().finditer(self.text):
            content_start = match.start() + len(match.group("indent"))
            comment = self._comment_at(tree, content_start) if tree is not None else None
            if tree is not None and comment is None:
                continue  # "# dcode: fill" inside a string is text, not a marker
            hint = next((v for k, v in match.groupdict().items() if k.startswith("hint") and v is not None), "")
            hint = hint.strip().lstrip(":-–—").strip() or None
            line_end = self.offsets.line_end(match.start())
            parent = comment.parent if comment is not None else None
            statement_level = parent is None or (self.syntax is not None and parent.type in self.syntax.containers)
            markers.append(
                Marker(
                    match.start(), line_end, content_start, match.end(), match.group("indent"), hint, statement_level
                )
            )
        return markers

    def _comment_at(self, tree: tree_sitter.Tree, char: int) -> tree_sitter.Node | None:
        byte = self.offsets.to_byte(char)
        node: tree_sitter.Node | None = tree.root_node.descendant_for_byte_range(byte, byte + 1)
        while node is not None:
            if is_comment(node):
                return node
            node = node.parent
        return None

    def _patched_source(self) -> bytes:
        patched = bytearray(self.data)
        for marker in self.markers:
            if not marker.statement_level:
                continue  # `pass` inside a call's arguments would itself be a syntax error
            start = self.offsets.to_byte(marker.content_start)
            end = self.offsets.to_byte(marker.content_end)
            end -= 1 if self.data[start:end].endswith(b"\r") else 0
            patched[start:end] = b"pass".ljust(end - start)
        return bytes(patched)
