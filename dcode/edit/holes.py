"""Holes a file shows by itself: `dcode: fill` markers, stub bodies (`pass`, `todo!()`, `throw new
UnsupportedOperationException()`, an empty body that must return something) and syntax errors."""

from __future__ import annotations

import re
from typing import Any

import tree_sitter

from dcode.context.definitions import DefNode, body_statements, docstring_node
from dcode.context.syntax import FUNCTION_LIKE, enclosing_statement, error_nodes, is_comment
from dcode.context.target import Target, indent_of_line, indent_unit
from dcode.edit.document import Document, Marker

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



def marker_target(doc: Document, m: Marker, **extra: Any) -> Target:
    return doc.make(m.start, m.end, "marker", indent=m.indent, hint=m.hint, scopes=doc.scopes_at(m.start, m.end),
                    **extra)  # fmt: skip


def _marker_targets(doc: Document) -> list[Target]:
    return [marker_target(doc, m) for m in doc.markers]


def _empty_body_insertion(doc: Document, body: tree_sitter.Node, after: tree_sitter.Node | None) -> tuple[int, str]:
    """Where code goes in a body with no statements: after `after` (comments/docstring) or `{`.

    Returns (position, indent). When the anchor ends its line the insertion is at the start of the
    next line (whole lines go in); otherwise right after the anchor, as in `{}` on one line.
    """
    anchor_start = doc.char(after.start_byte if after is not None else body.start_byte)
    anchor_end = doc.char(after.end_byte if after is not None else body.start_byte + 1)
    base = indent_of_line(doc.text, doc.offsets, anchor_start)
    # A comment or docstring on its own line is already at body indentation; `{` is not.
    own_line = after is not None and doc.text[doc.offsets.line_start(anchor_start) : anchor_start].strip() == ""
    indent = base if own_line else base + indent_unit(doc.text)
    line_end = doc.offsets.line_end(anchor_end)
    if doc.text[anchor_end:line_end].strip() == "" and doc.text[line_end - 1 : line_end] == "\n":
        return line_end, indent
    return anchor_end, indent


def body_hole(doc: Document, defn: DefNode) -> tuple[int, int, str | None]:
    """The statements of a definition's body after any docstring: (start, end, indent or None)."""
    assert defn.body is not None and doc.syntax is not None
    body = defn.body
    if body.type not in doc.syntax.bodies:
        start, end = doc.char(body.start_byte), doc.char(body.end_byte)  # `=> expr` arrow bodies
        return start, end, None
    statements = body_statements(body)
    doc_node = docstring_node(defn, doc.syntax)
    if doc_node is not None:
        statements = [s for s in statements if s.start_byte >= doc_node.end_byte]
    if not statements:
        position, indent = _empty_body_insertion(doc, body, doc_node)
        return position, position, indent
    start, end = doc.widen_to_lines(doc.char(statements[0].start_byte), doc.char(statements[-1].end_byte))
    return start, end, None


def _python_stub(doc: Document, defn: DefNode) -> bool:
    """Statements after the docstring are all pass / ... / raise NotImplementedError (or none)."""
    assert doc.syntax is not None and defn.body is not None
    if doc.path.suffix == ".pyi" or _PY_NOT_STUB_DECORATORS.search(_node_text(doc, defn.outer)[:2000]):
        return False  # declarations by design: type stubs, abstract methods, overloads
    parent = defn.parent
    if parent is not None and parent.kind == "class":
        bases = parent.node.child_by_field_name("superclasses")
        if bases is not None and "Protocol" in _node_text(doc, bases):
            return False
    doc_node = docstring_node(defn, doc.syntax)
    code = [s for s in body_statements(defn.body) if not is_comment(s) and s != doc_node]
    if not code:
        return doc_node is not None  # only a docstring: the body is still to be written
    return all(_PY_STUB.match(_node_text(doc, s).strip()) for s in code)


def _node_text(doc: Document, node: tree_sitter.Node) -> str:
    return doc.source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _brace_stub(doc: Document, defn: DefNode) -> tuple[list[tree_sitter.Node], bool] | None:
    """(stub statements, empty) when a brace-language body is a stub, else None."""
    assert defn.body is not None and doc.syntax is not None
    statements = body_statements(defn.body)
    code = [s for s in statements if not is_comment(s)]
    if not code:
        constructor = defn.kind == "constructor" or defn.name.startswith("~") or defn.name == "constructor"
        constructor = constructor or (defn.parent is not None and defn.parent.name == defn.name)
        if defn.node.type == "variable_declarator" or constructor:
            return None  # `() => {}` callbacks and empty constructors are usually meant to be empty
        # Only a function that declares a result cannot be finished with an empty body (stubs.scm).
        return (statements, True) if doc.syntax.declares_result(defn.node) else None
    if len(code) == 1:
        text = _node_text(doc, code[0]).strip().rstrip(";").strip()
        if any(pattern.match(text) for pattern in _BRACE_STUBS):
            return code, False
    return None


def _stub_targets(doc: Document, exclude: list[Target]) -> list[Target]:
    if doc.syntax is None:
        return []
    targets: list[Target] = []
    for defn in doc.definitions:
        if defn.kind not in FUNCTION_LIKE or defn.body is None or defn.body.has_error:
            continue
        if doc.lang.name == "python":
            if not _python_stub(doc, defn):
                continue
            start, end, indent = body_hole(doc, defn)
        else:
            found = _brace_stub(doc, defn)
            if found is None:
                continue
            statements, empty = found
            if empty:
                comments = [s for s in statements if is_comment(s)]
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


def _error_detail(doc: Document, node: tree_sitter.Node) -> str:
    line = node.start_point[0] + 1
    if node.is_missing:
        return f"missing '{node.type}' at line {line}"
    snippet = _node_text(doc, node).strip().split("\n", 1)[0][:30]
    return f"unexpected '{snippet}' at line {line}" if snippet else f"syntax error at line {line}"


def _syntax_error_targets(doc: Document) -> list[Target]:
    if doc.tree is None or doc.syntax is None or not doc.tree.root_node.has_error:
        return []
    errors = error_nodes(doc.tree)
    informative = [e for e in errors if e.is_missing or e.end_byte > e.start_byte]
    errors = informative or errors  # zero-width ERROR nodes are echoes of a real error nearby
    regions: list[tuple[int, int, list[str]]] = []
    for node in errors:
        statement = enclosing_statement(node, doc.syntax)
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


def all_holes(doc: Document) -> tuple[list[Target], list[Target], list[Target]]:
    markers = _marker_targets(doc)
    return markers, _stub_targets(doc, markers), _syntax_error_targets(doc)


REPAIR_WINDOW_LINES = 2  # suspect lines a syntax repair tries on their own before the whole region


def repair_windows(region: Target, hint_line: int | None = None) -> list[Target]:
    """Narrower holes inside a syntax-error region, the least rewriting first, for a repair to try
    before it re-masks the whole region. The region is the whole enclosing statement, often a
    whole function, and tree-sitter's error node often starts lines before the mistake; re-masking
    all of it asks the model to rewrite code that was right. For each suspect line (`hint_line`,
    the compiler's own verdict where there is one, then the first lines of the first error node):
    an insertion where the line's code ends (an unclosed bracket, a missing colon), the line from
    where an error node starts on it (`if x = 1:` keeps `if x `), then the line's code."""
    doc = Document(region.path, region.text, region.language)
    if doc.tree is None:
        return []
    offsets = doc.offsets
    inside = [n for n in error_nodes(doc.tree) if region.start_byte <= n.start_byte < region.end_byte]
    rows = [hint_line - 1] if hint_line is not None else []
    if inside:
        rows += range(inside[0].start_point[0], inside[0].end_point[0] + 1)
    error_starts = sorted({doc.char(n.start_byte) for n in inside})
    windows: list[Target] = []
    suspects = [r for r in dict.fromkeys(rows) if 0 <= r < len(offsets.line_chars)][:REPAIR_WINDOW_LINES]
    for row in suspects:
        start, end = offsets.line_span(row + 1)
        line = region.text[start:end]
        code_start, code_end = start + len(line) - len(line.lstrip()), start + len(line.rstrip())
        if not region.start <= code_start < code_end <= region.end:
            continue  # a blank line, or one outside the region
        spans = [(code_end, code_end)] + [(s, code_end) for s in error_starts if code_start < s < code_end]
        for s, e in dict.fromkeys(spans + [(code_start, code_end)]):
            windows.append(doc.make(s, e, "syntax_error", detail=region.detail, scopes=doc.scopes_at(s, e)))
    return windows
