"""Turn what the user points at into a hole: the character range to regenerate, plus its scopes.

Target forms (see `resolve_target`):

* `path:LINE`          the whole line (with its line break)
* `path:START-END`     whole lines START..END, inclusive
* `path:LINE:COL`      an empty insertion point before column COL (1-based, in characters)
* `path::Class.method` the body of a definition after its docstring (`::` also separates C++/Rust
                       scopes: `path::ns::Class::method`); its first hole marker when it has one
* `path`               the first hole marker, else the first stub body, else the first syntax error

Hole marker: a line whose only content is a comment `dcode: fill` in the language's comment
syntax (`# dcode: fill`, `// dcode: fill`, `/* dcode: fill */`, `-- dcode: fill`); text after it is
a hint. The hole is the whole marker line; generated code takes over the marker's indentation.

Holes made of whole lines include their final line break, so `text[:start] + new + text[end:]`
with `new` ending in a newline is the edit. Holes are never silently widened past what the user
chose: lines are only completed when the hole's statements sit alone on their lines.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter

from dcode.context import languages as L
from dcode.context.languages import Language
from dcode.errors import InputError

TARGET_KINDS = ("line", "range", "symbol", "marker", "stub", "syntax_error", "position")
# Larger files are refused before they are read: parsing, context, verification and the diff
# each go over the whole file, so a 50 MB file took minutes and gigabytes before any proposal.
MAX_FILE_BYTES = 2 * 2**20
SPEC_HELP = "expected PATH, PATH:LINE, PATH:LINE:COL, PATH:START-END or PATH::SYMBOL"


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


# --------------------------------------------------------------------------------------------
# Reading files and offsets
# --------------------------------------------------------------------------------------------


def read_source(path: Path | str) -> str:
    """A file's text, decoded as UTF-8 with line endings untouched (offsets match the bytes)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{path} is {size / 2**20:.1f} MiB: larger than dcode's limit of "
                             f"{MAX_FILE_BYTES // 2**20} MiB for a file it edits")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise InputError(f"{path} is a binary file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (invalid byte at offset {exc.start})") from None


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


def _indent_of_line(text: str, offsets: TextOffsets, char: int) -> str:
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


# --------------------------------------------------------------------------------------------
# One parsed document
# --------------------------------------------------------------------------------------------

_NOT_IMPLEMENTED = r"(?:not\s*(?:yet\s*)?implemented|unimplemented|\btodo\b)"
_BRACE_STUBS = (
    re.compile(r"^(?:todo|unimplemented)!\s*[(\[{]"),  # Rust
    re.compile(r"^panic!\s*\(\s*\"[^\"]*" + _NOT_IMPLEMENTED, re.I),  # Rust
    re.compile(r"^throw\s+new\s+(?:java\.lang\.)?UnsupportedOperationException\b"),  # Java
    re.compile(r"^throw\s+(?:new\s+)?[\w:.]*(?:Error|Exception|error)\s*\(\s*[\"'`][^\"'`]*" + _NOT_IMPLEMENTED, re.I),
    re.compile(r"^panic\s*\(\s*[\"`][^\"`]*" + _NOT_IMPLEMENTED, re.I),  # Go
    re.compile(r"^assert\s*\(\s*(?:0|false)\s*&&\s*\"[^\"]*" + _NOT_IMPLEMENTED, re.I),  # C/C++
)
_PY_STUB = re.compile(r"^(?:pass|\.\.\.|raise\s+NotImplementedError\b.*)$", re.S)
_PY_NOT_STUB_DECORATORS = re.compile(r"@\s*(?:[\w.]*\.)?(?:abstractmethod|abstractproperty|overload)\b")


@dataclass
class _Marker:
    start: int  # character offsets of the whole line (with its line break)
    end: int
    content_start: int  # where the comment begins on the line
    content_end: int  # end of the line's text before the line break
    indent: str
    hint: str | None
    statement_level: bool = True  # the comment sits where a statement could (not inside a call)


class _Document:
    """A file's text, language, parse tree and markers, shared by every target form."""

    def __init__(self, path: Path, text: str, lang: Language) -> None:
        self.path = path
        self.text = text
        self.lang = lang
        self.data = text.encode("utf-8")
        self.offsets = TextOffsets(text, self.data)
        self.syntax = L.syntax_for(lang)
        original = L.parse(self.data, lang)
        self.markers = self._find_markers(original)
        # A marker alone in a Python block leaves the block empty, which misparses everything
        # after it. Parse a copy where each marker comment is replaced, byte for byte, by `pass`.
        self.source = self.data
        self.tree = original
        if original is not None and lang.name == "python" and self.markers:
            self.source = self._patched_source()
            self.tree = L.parse(self.source, lang)
        self._defs: list[L.DefNode] | None = None

    # -- markers -------------------------------------------------------------------------------

    def _marker_pattern(self) -> re.Pattern[str]:
        # `///`, `//!`, `##` and `---` are comments too.
        alternatives = [rf"{re.escape(p)}{re.escape(p[-1])}*!?" for p in self.lang.line_comments]
        body = r"[ \t]*dcode:[ \t]*fill\b(?P<hint{n}>[^\n]*?)"
        parts = [f"(?:{'|'.join(alternatives)}){body.format(n=0)}"] if alternatives else []
        for i, (open_, close) in enumerate(self.lang.block_comments, start=1):
            parts.append(f"{re.escape(open_)}{body.format(n=i)}[ \\t]*{re.escape(close)}")
        return re.compile(rf"^(?P<indent>[ \t]*)(?:{'|'.join(parts)})[ \t]*\r?$", re.M | re.I)

    def _find_markers(self, tree: tree_sitter.Tree | None) -> list[_Marker]:
        markers: list[_Marker] = []
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
                _Marker(
                    match.start(), line_end, content_start, match.end(), match.group("indent"), hint, statement_level
                )
            )
        return markers

    def _comment_at(self, tree: tree_sitter.Tree, char: int) -> tree_sitter.Node | None:
        byte = self.offsets.to_byte(char)
        node: tree_sitter.Node | None = tree.root_node.descendant_for_byte_range(byte, byte + 1)
        while node is not None:
            if L.is_comment(node):
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

    # -- helpers -------------------------------------------------------------------------------

    @property
    def definitions(self) -> list[L.DefNode]:
        if self._defs is None:
            self._defs = L.definition_nodes(self.tree, self.lang) if self.tree is not None else []
        return self._defs

    def char(self, byte: int) -> int:
        return self.offsets.to_char(byte)

    def make(self, start: int, end: int, kind: str, **extra: Any) -> Target:
        """A Target for characters [start, end); indent defaults to the first line's indentation."""
        extra.setdefault("indent", _indent_of_line(self.text, self.offsets, start))
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

    def scope_of(self, defn: L.DefNode) -> Scope:
        assert self.syntax is not None
        header_end = defn.outer.end_byte
        doc_node = L.docstring_node(defn, self.syntax)
        if doc_node is not None:
            header_end = doc_node.end_byte
        elif defn.body is not None:
            header_end = defn.body.start_byte + (
                1 if self.source[defn.body.start_byte : defn.body.start_byte + 1] == b"{" else 0
            )
        return Scope(
            kind=defn.kind,
            name=defn.name,
            signature=L.signature_of(defn, self.source),
            start=self.char(defn.start_byte),
            end=self.char(defn.end_byte),
            qualname=defn.qualname,
            doc=L.doc_of(defn, self.syntax, self.source),
            header_end=self.char(header_end),
        )

    def chain_of(self, defn: L.DefNode) -> list[Scope]:
        """`defn` and the definitions around it, outermost first."""
        chain: list[L.DefNode] = []
        current: L.DefNode | None = defn
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
        chain = [d for d in L.enclosing_definitions(self.tree, self.lang, b0, b1) if d.outer.start_byte < b0]
        return [self.scope_of(d) for d in chain]


# --------------------------------------------------------------------------------------------
# Holes: markers, stubs, syntax errors
# --------------------------------------------------------------------------------------------


def _marker_target(doc: _Document, m: _Marker, **extra: Any) -> Target:
    return doc.make(m.start, m.end, "marker", indent=m.indent, hint=m.hint, scopes=doc.scopes_at(m.start, m.end),
                    **extra)  # fmt: skip


def _marker_targets(doc: _Document) -> list[Target]:
    return [_marker_target(doc, m) for m in doc.markers]


def _empty_body_insertion(doc: _Document, body: tree_sitter.Node, after: tree_sitter.Node | None) -> tuple[int, str]:
    """Where code goes in a body with no statements: after `after` (comments/docstring) or `{`.

    Returns (position, indent). When the anchor ends its line the insertion is at the start of the
    next line (whole lines go in); otherwise right after the anchor, as in `{}` on one line.
    """
    anchor_start = doc.char(after.start_byte if after is not None else body.start_byte)
    anchor_end = doc.char(after.end_byte if after is not None else body.start_byte + 1)
    base = _indent_of_line(doc.text, doc.offsets, anchor_start)
    # A comment or docstring on its own line is already at body indentation; `{` is not.
    own_line = after is not None and doc.text[doc.offsets.line_start(anchor_start) : anchor_start].strip() == ""
    indent = base if own_line else base + indent_unit(doc.text)
    line_end = doc.offsets.line_end(anchor_end)
    if doc.text[anchor_end:line_end].strip() == "" and doc.text[line_end - 1 : line_end] == "\n":
        return line_end, indent
    return anchor_end, indent


def _body_hole(doc: _Document, defn: L.DefNode) -> tuple[int, int, str | None]:
    """The statements of a definition's body after any docstring: (start, end, indent or None)."""
    assert defn.body is not None and doc.syntax is not None
    body = defn.body
    if body.type not in ("block", "statement_block", "compound_statement", "declaration_list", "class_body",
                         "field_declaration_list", "interface_body", "enum_body", "constructor_body",
                         "interface_type", "enum_variant_list") and not body.type.endswith("body"):  # fmt: skip
        start, end = doc.char(body.start_byte), doc.char(body.end_byte)  # `=> expr` arrow bodies
        return start, end, None
    statements = L.body_statements(body)
    doc_node = L.docstring_node(defn, doc.syntax)
    if doc_node is not None:
        statements = [s for s in statements if s.start_byte >= doc_node.end_byte]
    if not statements:
        position, indent = _empty_body_insertion(doc, body, doc_node)
        return position, position, indent
    start, end = doc.widen_to_lines(doc.char(statements[0].start_byte), doc.char(statements[-1].end_byte))
    return start, end, None


def _python_stub(doc: _Document, defn: L.DefNode) -> bool:
    """Statements after the docstring are all pass / ... / raise NotImplementedError (or none)."""
    assert doc.syntax is not None and defn.body is not None
    if doc.path.suffix == ".pyi" or _PY_NOT_STUB_DECORATORS.search(_node_text(doc, defn.outer)[:2000]):
        return False  # declarations by design: type stubs, abstract methods, overloads
    parent = defn.parent
    if parent is not None and parent.kind == "class":
        bases = parent.node.child_by_field_name("superclasses")
        if bases is not None and "Protocol" in _node_text(doc, bases):
            return False
    doc_node = L.docstring_node(defn, doc.syntax)
    code = [s for s in L.body_statements(defn.body) if not L.is_comment(s) and s != doc_node]
    if not code:
        return doc_node is not None  # only a docstring: the body is still to be written
    return all(_PY_STUB.match(_node_text(doc, s).strip()) for s in code)


def _node_text(doc: _Document, node: tree_sitter.Node) -> str:
    return doc.source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _declares_result(defn: L.DefNode, lang: str) -> bool:
    """Whether a function declares a non-void result, so that an empty body cannot be finished code."""
    node = defn.node
    if lang == "rust":
        result = node.child_by_field_name("return_type")
        return result is not None and L.node_text(result) != "()"
    if lang == "go":
        return node.child_by_field_name("result") is not None
    if lang == "java":
        result = node.child_by_field_name("type")
        return result is not None and result.type != "void_type"
    if lang in ("c", "cpp"):
        result = node.child_by_field_name("type")
        declarator = node.child_by_field_name("declarator")
        returns_pointer = declarator is not None and declarator.type in ("pointer_declarator", "reference_declarator")
        return result is not None and (L.node_text(result) != "void" or returns_pointer)
    if lang in ("typescript", "tsx"):
        result = node.child_by_field_name("return_type")
        return result is None or L.node_text(result).lstrip(": \t") not in ("void", "Promise<void>", "never")
    return lang == "javascript"


def _brace_stub(doc: _Document, defn: L.DefNode) -> tuple[list[tree_sitter.Node], bool] | None:
    """(stub statements, empty) when a brace-language body is a stub, else None."""
    assert defn.body is not None
    statements = L.body_statements(defn.body)
    code = [s for s in statements if not L.is_comment(s)]
    if not code:
        constructor = defn.kind == "constructor" or defn.name.startswith("~") or defn.name == "constructor"
        constructor = constructor or (defn.parent is not None and defn.parent.name == defn.name)
        if defn.node.type == "variable_declarator" or constructor:
            return None  # `() => {}` callbacks and empty constructors are usually meant to be empty
        return (statements, True) if _declares_result(defn, doc.lang.name) else None
    if len(code) == 1:
        text = _node_text(doc, code[0]).strip().rstrip(";").strip()
        if any(pattern.match(text) for pattern in _BRACE_STUBS):
            return code, False
    return None


def _stub_targets(doc: _Document, exclude: list[Target]) -> list[Target]:
    if doc.syntax is None:
        return []
    targets: list[Target] = []
    for defn in doc.definitions:
        if defn.kind not in L.FUNCTION_LIKE or defn.body is None or defn.body.has_error:
            continue
        if doc.lang.name == "python":
            if not _python_stub(doc, defn):
                continue
            start, end, indent = _body_hole(doc, defn)
        else:
            found = _brace_stub(doc, defn)
            if found is None:
                continue
            statements, empty = found
            if empty:
                comments = [s for s in statements if L.is_comment(s)]
                start, indent = _empty_body_insertion(doc, defn.body, comments[-1] if comments else None)
                end = start
            else:
                start, end = doc.widen_to_lines(doc.char(statements[0].start_byte), doc.char(statements[-1].end_byte))
                indent = None
        if any(t.start <= start <= t.end or start <= t.start < end for t in exclude):
            continue  # a marker already stands for this hole
        extra: dict[str, Any] = {"scopes": doc.chain_of(defn), "symbol": defn.qualname}
        if indent is not None:
            extra["indent"] = indent
        targets.append(doc.make(start, end, "stub", **extra))
    return targets


def _error_detail(doc: _Document, node: tree_sitter.Node) -> str:
    line = node.start_point[0] + 1
    if node.is_missing:
        return f"missing '{node.type}' at line {line}"
    snippet = _node_text(doc, node).strip().split("\n", 1)[0][:30]
    return f"unexpected '{snippet}' at line {line}" if snippet else f"syntax error at line {line}"


def _syntax_error_targets(doc: _Document) -> list[Target]:
    if doc.tree is None or doc.syntax is None or not doc.tree.root_node.has_error:
        return []
    errors = L.error_nodes(doc.tree)
    informative = [e for e in errors if e.is_missing or e.end_byte > e.start_byte]
    errors = informative or errors  # zero-width ERROR nodes are echoes of a real error nearby
    regions: list[tuple[int, int, list[str]]] = []
    for node in errors:
        statement = L.enclosing_statement(node, doc.syntax)
        if statement.parent is None:
            statement = node
        start, end = doc.char(statement.start_byte), doc.char(statement.end_byte)
        start, end = doc.offsets.line_start(start), doc.offsets.line_end(end - 1 if end > start else end)
        detail = _error_detail(doc, node)
        if regions and start <= regions[-1][1]:
            first, last, details = regions[-1]
            regions[-1] = (first, max(last, end), details + [detail])
        else:
            regions.append((start, end, [detail]))
    return [
        doc.make(start, end, "syntax_error", detail="; ".join(details[:3]), scopes=doc.scopes_at(start, end))
        for start, end, details in regions
    ]


def _all_holes(doc: _Document) -> tuple[list[Target], list[Target], list[Target]]:
    markers = _marker_targets(doc)
    return markers, _stub_targets(doc, markers), _syntax_error_targets(doc)


def find_holes(path_or_text: Path | str, language: Language | None = None) -> list[Target]:
    """Every marker, stub body and syntax-error region, in file order.

    A `Path` is read from disk (language detected unless given); a `str` is the source text itself
    (plain text unless `language` is given).
    """
    if isinstance(path_or_text, Path):
        text = read_source(path_or_text)
        doc = _Document(path_or_text, text, language or L.detect_language(path_or_text, text))
    else:
        doc = _Document(Path("<text>"), path_or_text, language or L.get_language(L.PLAIN_TEXT))
    markers, stubs, errors = _all_holes(doc)
    return sorted(markers + stubs + errors, key=lambda t: (t.start, t.end))


# --------------------------------------------------------------------------------------------
# Target specs
# --------------------------------------------------------------------------------------------

_RANGE = re.compile(r"(?P<path>.+):(?P<first>\d+)-(?P<last>\d+)")
_POSITION = re.compile(r"(?P<path>.+):(?P<line>\d+):(?P<col>\d+)")
_LINE = re.compile(r"(?P<path>.+):(?P<line>\d+)")


def resolve_target(spec: str, root: Path | None = None) -> Target:
    """Resolve a target spec; relative paths are taken from `root` (default: the working directory)."""
    spec = spec.strip()
    if not spec:
        raise InputError(f"empty target: {SPEC_HELP}")
    base = Path(root) if root is not None else None
    if _exists(base, spec):
        return _bare_path(_document(base, spec))
    if "::" in spec:
        path_part, symbol = spec.split("::", 1)
        if not path_part or not symbol.strip(":. "):
            raise InputError(f"malformed target '{spec}': {SPEC_HELP}")
        return _symbol_target(_document(base, path_part), symbol)
    if match := _RANGE.fullmatch(spec):
        return _range_target(_document(base, match["path"]), int(match["first"]), int(match["last"]), spec)
    if match := _POSITION.fullmatch(spec):
        return _position_target(_document(base, match["path"]), int(match["line"]), int(match["col"]), spec)
    if match := _LINE.fullmatch(spec):
        return _range_target(_document(base, match["path"]), int(match["line"]), int(match["line"]), spec)
    head = spec.rsplit(":", 1)[0]
    if ":" in spec and _exists(base, head):
        raise InputError(f"malformed target '{spec}': {SPEC_HELP}")
    return _bare_path(_document(base, spec))  # reports the missing file


def _exists(base: Path | None, path: str) -> bool:
    candidate = Path(path) if base is None or Path(path).is_absolute() else base / path
    try:
        return candidate.is_file()
    except OSError:
        return False


def _document(base: Path | None, path_str: str) -> _Document:
    # Keep the path as typed when it is relative to the working directory: messages echo it.
    path = Path(path_str) if base is None or Path(path_str).is_absolute() else base / path_str
    text = read_source(path)
    return _Document(path, text, L.detect_language(path, text))


def _bare_path(doc: _Document) -> Target:
    markers, stubs, errors = _all_holes(doc)
    for group in (markers, stubs, errors):
        if group:
            return group[0]
    raise InputError(
        f"nothing to fill in {doc.path}: no dcode: fill marker, stub body or syntax error; point at a line or symbol"
    )


def _check_line(doc: _Document, line: int, spec: str) -> None:
    count = doc.offsets.line_count
    if line < 1:
        raise InputError(f"bad target '{spec}': line numbers start at 1")
    if line > max(count, 1):
        raise InputError(f"bad target '{spec}': {doc.path} has only {count} lines")


def _range_target(doc: _Document, first: int, last: int, spec: str) -> Target:
    if last < first:
        raise InputError(f"bad target '{spec}': the range ends before it starts")
    _check_line(doc, first, spec)
    _check_line(doc, last, spec)
    start = doc.offsets.line_span(first)[0]
    end = doc.offsets.line_span(last)[1]
    return doc.make(start, end, "line" if first == last else "range", scopes=doc.scopes_at(start, end))


def _position_target(doc: _Document, line: int, col: int, spec: str) -> Target:
    _check_line(doc, line, spec)
    line_start, line_end = doc.offsets.line_span(line)
    length = len(doc.text[line_start:line_end].rstrip("\r\n"))
    if col < 1 or col > length + 1:
        raise InputError(f"bad target '{spec}': line {line} of {doc.path} has {length} characters")
    position = line_start + col - 1
    target = doc.make(position, position, "position", scopes=doc.scopes_at(position, position))
    return target


def _symbol_target(doc: _Document, symbol: str) -> Target:
    if doc.syntax is None:
        raise InputError(f"cannot find symbol '{symbol}' in {doc.path}: no grammar for {doc.lang.name} files")
    wanted = ".".join(p for p in re.split(r"::|\.", symbol.strip()) if p)
    matches = [d for d in doc.definitions if d.qualname == wanted or d.qualname.endswith("." + wanted)]
    exact = [d for d in matches if d.qualname == wanted]
    matches = exact or matches
    with_body = [d for d in matches if d.body is not None]
    if not matches:
        known = ", ".join(d.qualname for d in doc.definitions[:8]) or "none"
        raise InputError(f"unknown symbol '{symbol}' in {doc.path} (definitions there: {known})")
    if not with_body:
        raise InputError(f"'{symbol}' in {doc.path} is a declaration without a body; point at a line instead")
    if len(with_body) > 1:
        # Rust: `S` names both `struct S` and `impl S`; the type is what the user means.
        not_impl = [d for d in with_body if d.kind != "impl"]
        with_body = not_impl if len(not_impl) == 1 else with_body
    if len(with_body) > 1:
        lines = ", ".join(str(d.node.start_point[0] + 1) for d in with_body)
        raise InputError(f"symbol '{symbol}' is ambiguous in {doc.path} (lines {lines}); point at a line instead")
    defn = with_body[0]
    assert defn.body is not None
    # A marker in the body says where the code goes, as for `fill PATH`. (Python's parse sees it
    # as `pass`, so the body's statements would otherwise end inside the comment.)
    body_start, body_end = doc.char(defn.body.start_byte), doc.char(defn.body.end_byte)
    marker = next((m for m in doc.markers if body_start <= m.content_start < body_end), None)
    if marker is not None:
        return _marker_target(doc, marker, symbol=defn.qualname)
    start, end, indent = _body_hole(doc, defn)
    extra: dict[str, Any] = {"scopes": doc.chain_of(defn), "symbol": defn.qualname}
    if indent is not None:
        extra["indent"] = indent
    return doc.make(start, end, "symbol", **extra)


def target_in_text(path: Path, text: str, offset: int) -> Target:
    """An empty insertion point at character `offset` of an editor buffer (`text` need not match
    the file on disk): what `dcode complete` gathers repository context for."""
    doc = _Document(path, text, L.detect_language(path, text))
    offset = max(0, min(offset, len(text)))
    return doc.make(offset, offset, "position", scopes=doc.scopes_at(offset, offset))


def scope_exit(target: Target, fill: str) -> int | None:
    """Where code put into the hole leaves the definition the hole is in, as an offset into
    `fill`; None when it stays inside (or the hole is in no definition). Models often finish a
    body and go on to write the next function, or close the body's brace themselves although
    the file already does; that part is not what was asked for.

    The cut is after the last line still inside the definition; a closing brace the fill put on
    a line of its own goes too, since the text after the hole holds the real one."""
    if not target.scopes or target.kind == "syntax_error" or not fill.strip():
        return None
    owner = target.scopes[-1]
    text = target.text[: target.start] + fill + target.text[target.end :]
    fill_end = target.start + len(fill)
    doc = _Document(target.path, text, target.language)
    if doc.tree is None:
        return None
    here = [s for s in doc.scopes_at(target.start, target.start) if (s.qualname, s.name) == (owner.qualname, owner.name)]
    if not here:
        cut = target.start  # the fill's first code is already outside (it dedented at once)
    elif here[-1].end >= fill_end:
        return None
    else:
        cut = max(_scope_cut(text, here[-1].end), target.start)
    if not text[cut:fill_end].strip():
        return None  # only blank lines after the definition: nothing escapes
    return cut - target.start


def _scope_cut(text: str, end: int) -> int:
    """Where to cut text that goes on past a definition ending at `end`: after the definition's
    last line, or before its closing brace (on its own line: the whole line)."""
    line_start = text.rfind("\n", 0, end) + 1
    brace = text.rfind("}", line_start, end)
    if brace >= 0 and text[brace + 1 : end].strip() in ("", ";"):
        return line_start if not text[line_start:brace].strip() else brace
    newline = text.find("\n", end)
    return len(text) if newline < 0 else newline + 1
