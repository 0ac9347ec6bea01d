"""One file as tree-sitter sees it, asked once: text, offsets, parse tree, definitions, and the
scopes (signature, docstring, header) around any range. Targets are made from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcode.context.definitions import DefNode, definition_nodes, doc_of, docstring_node, enclosing_definitions, signature_of
from dcode.context.languages import Language, parse
from dcode.context.syntax import syntax_for
from dcode.context.target import Scope, Target, TextOffsets, indent_of_line


class ParsedFile:
    """A file's text, language, parse tree and definitions, shared by everything that reads it."""

    def __init__(self, path: Path, text: str, lang: Language) -> None:
        self.path = path
        self.text = text
        self.lang = lang
        self.data = text.encode("utf-8")
        self.offsets = TextOffsets(text, self.data)
        self.syntax = syntax_for(lang)
        # What was parsed: the text's bytes, unless a subclass parses a patched copy instead.
        self.source = self.data
        self.tree = parse(self.data, lang)
        self._defs: list[DefNode] | None = None

    @property
    def definitions(self) -> list[DefNode]:
        if self._defs is None:
            self._defs = definition_nodes(self.tree, self.lang) if self.tree is not None else []
        return self._defs

    def char(self, byte: int) -> int:
        return self.offsets.to_char(byte)

    def make(self, start: int, end: int, kind: str, **extra: Any) -> Target:
        """A Target for characters [start, end); indent defaults to the first line's indentation."""
        extra.setdefault("indent", indent_of_line(self.text, self.offsets, start))
        return Target(
            path=self.path, text=self.text, start=start, end=end, start_byte=self.offsets.to_byte(start),
            end_byte=self.offsets.to_byte(end), kind=kind, language=self.lang, **extra,
        )  # fmt: skip

    def widen_to_lines(self, start: int, end: int) -> tuple[int, int]:
        """Whole lines when [start, end) is alone on its lines, else the exact range."""
        line_start = self.offsets.line_start(start)
        line_end = self.offsets.line_end(end - 1 if end > start else end)
        before = self.text[line_start:start]
        after = self.text[end:line_end]
        # A separator after the last item (`x: u8,`) belongs to it, so the lines are still whole.
        if before.strip() == "" and after.strip() in ("", ",", ";"):
            return line_start, line_end
        return start, end

    def scope_of(self, defn: DefNode) -> Scope:
        assert self.syntax is not None
        header_end = defn.outer.end_byte
        doc_node = docstring_node(defn, self.syntax)
        if doc_node is not None:
            header_end = doc_node.end_byte
        elif defn.body is not None:
            header_end = defn.body.start_byte + (
                1 if self.source[defn.body.start_byte : defn.body.start_byte + 1] == b"{" else 0
            )
        return Scope(
            kind=defn.kind,
            name=defn.name,
            signature=signature_of(defn, self.source),
            start=self.char(defn.start_byte),
            end=self.char(defn.end_byte),
            qualname=defn.qualname,
            doc=doc_of(defn, self.syntax, self.source),
            header_end=self.char(header_end),
        )

    def chain_of(self, defn: DefNode) -> list[Scope]:
        """`defn` and the definitions around it, outermost first."""
        chain: list[DefNode] = []
        current: DefNode | None = defn
        while current is not None:
            chain.append(current)
            current = current.parent
        return [self.scope_of(d) for d in reversed(chain)]

    def scopes_at(self, start: int, end: int) -> list[Scope]:
        """Definitions around a character range whose header lies before the range's code."""
        if self.tree is None:
            return []
        # Trim on the parsed bytes: a patched marker line is `pass` plus padding there.
        b0, b1 = self.offsets.to_byte(start), self.offsets.to_byte(end)
        hole = self.source[b0:b1]
        if hole.strip():
            b0, b1 = b0 + len(hole) - len(hole.lstrip()), b1 - (len(hole) - len(hole.rstrip()))
        else:
            b1 = b0
        chain = [d for d in enclosing_definitions(self.tree, self.lang, b0, b1) if d.outer.start_byte < b0]
        return [self.scope_of(d) for d in chain]
