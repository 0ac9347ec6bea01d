"""What dcode records of one source file: its definitions (with signature and doc), its imports
and the names it references. The repository index caches these per file; context assembly
builds them afresh for the file being edited."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dcode.context.definitions import DefNode, definition_nodes, doc_of, leading_nodes, signature_of
from dcode.context.identifiers import identifier_texts, import_modules, import_nodes
from dcode.context.languages import PLAIN_TEXT, Language, parse
from dcode.context.syntax import Syntax, node_text, syntax_for


@dataclass(slots=True)
class Definition:
    """One definition. Byte range includes decorators and the doc comment above it; lines are 1-based."""

    name: str
    qualname: str
    kind: str
    path: str  # repository-relative, POSIX separators
    start_byte: int
    end_byte: int
    start_line: int
    end_line: int
    signature: str
    doc: str | None
    has_body: bool
    language: str

    def to_row(self) -> list[Any]:
        return [self.name, self.qualname, self.kind, self.start_byte, self.end_byte, self.start_line,
                self.end_line, self.signature, self.doc, int(self.has_body)]  # fmt: skip

    @classmethod
    def from_row(cls, row: list[Any], path: str, language: str) -> Definition:
        name, qualname, kind, sb, eb, sl, el, sig, doc, body = row
        return cls(name, qualname, kind, path, sb, eb, sl, el, sig, doc, bool(body), language)


@dataclass(slots=True)
class Import:
    text: str
    modules: list[str]
    names: list[str]
    line: int

    def stems(self) -> set[str]:
        """Names a file or directory providing this import could have (`./lib/util` -> util, lib)."""
        stems = set(self.names)
        for module in self.modules:
            module = re.sub(r"\{.*\}", "", module)  # Rust `a::b::{c, d}`: names are listed separately
            module = re.sub(r"\.(h|hh|hpp|js|jsx|mjs|ts|tsx|py|rs)$", "", module)
            parts = [p for p in re.split(r"[/\\.:*]+", module) if p]
            stems.update(parts[-2:])
        return stems


@dataclass
class FileInfo:
    path: str  # repository-relative, POSIX separators
    language: str
    definitions: list[Definition]
    imports: list[Import]
    references: set[str]
    size: int = 0
    mtime_ns: int = 0
    sha1: str = ""

    def import_stems(self) -> set[str]:
        stems: set[str] = set()
        for imp in self.imports:
            stems |= imp.stems()
        return stems


def definition_records(
    defs: list[DefNode], syntax: Syntax, data: bytes, path: str, language: str
) -> list[Definition]:
    """What the index keeps of a parsed file's definitions; each starts at the comments and
    attributes right above it, which document it."""
    records = []
    for defn in defs:
        leading = leading_nodes(defn.outer)
        start = leading[0] if leading else defn.outer
        records.append(
            Definition(
                defn.name, defn.qualname, defn.kind, path, start.start_byte, defn.outer.end_byte,
                start.start_point[0] + 1, defn.outer.end_point[0] + 1, signature_of(defn, data),
                doc_of(defn, syntax, data), defn.body is not None, language,
            )
        )  # fmt: skip
    return records


def analyze_source(data: bytes, lang: Language) -> dict[str, Any]:
    """The cache entry payload (definitions, imports, references) for one parsed file."""
    tree = parse(data, lang)
    syntax = syntax_for(lang)
    if tree is None or syntax is None:
        return {"d": [], "i": [], "r": []}
    defs = [d.to_row() for d in definition_records(definition_nodes(tree, lang), syntax, data, "", lang.name)]
    imports = []
    for node in import_nodes(tree, lang):
        modules, names = import_modules(node)
        imports.append([node_text(node), modules, names, node.start_point[0] + 1])
    return {"d": defs, "i": imports, "r": sorted(identifier_texts(tree, lang))}



def file_info(rel: str, entry: dict[str, Any]) -> FileInfo:
    language = entry.get("l") or PLAIN_TEXT
    return FileInfo(
        path=rel,
        language=language,
        definitions=[Definition.from_row(row, rel, language) for row in entry.get("d", ())],
        imports=[Import(*row) for row in entry.get("i", ())],
        references=set(entry.get("r", ())),
        size=entry.get("s", 0),
        mtime_ns=entry.get("m", 0),
        sha1=entry.get("h", ""),
    )
