"""What dcode knows about each grammar's nodes, read from tree-sitter query files.

`queries/<language>/` holds, in tree-sitter's query syntax (the way aider, nvim-treesitter and
Zed keep per-language knowledge), mostly one `(node_type) @capture` per line:

  definitions.scm  `@definition.<kind>` (function, class, method...) for each definition node, and
                   `@wrapper` for nodes that wrap one definition (decorators, `export`, `template`)
  statements.scm   `@container`: nodes whose children are statements
  imports.scm      `@import`: import-like statements
  identifiers.scm  `@identifier`: nodes that name something
  docstrings.scm   present when a body's first string documents it (Python)
  stubs.scm        `@body`: definition bodies that hold statements (any other body is one
                   expression); and `@returns`, in full patterns with fields and `#eq?`/`#match?`
                   predicates, on functions that declare a result, whose empty body is a stub.
                   Compiled and run as a query.

A first line `; inherits: LANG` starts from LANG's file of the same name (as in nvim-treesitter):
TypeScript builds on JavaScript, C++ on C. Files are read once per language; each query is
compiled once per grammar.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter

from dcode.context.languages import Language

CLASS_LIKE = frozenset(
    {"class", "struct", "interface", "trait", "impl", "enum", "union", "namespace", "module", "record"}
)
FUNCTION_LIKE = frozenset({"function", "method", "constructor"})
# Only these open a naming scope: a typedef or macro around a struct does not qualify its name.
SCOPE_KINDS = CLASS_LIKE | FUNCTION_LIKE



@dataclass(frozen=True)
class Syntax:
    """Node types with a meaning for dcode in one grammar."""

    definitions: dict[str, str]  # node type -> kind
    wrappers: frozenset[str]  # nodes that wrap one definition (decorators, export, template)
    containers: frozenset[str]  # nodes whose children are statements
    imports: frozenset[str]
    identifiers: frozenset[str]
    bodies: frozenset[str]  # definition bodies that hold statements (others are one expression)
    stubs: tree_sitter.Query = field(compare=False, repr=False)  # stubs.scm, compiled
    docstrings: bool = False  # Python: the first string statement of a body documents it

    def declares_result(self, function: tree_sitter.Node) -> bool:
        """Whether a function declares a (non-void) result: stubs.scm captures it as `@returns`."""
        cursor = tree_sitter.QueryCursor(self.stubs)
        cursor.set_max_start_depth(0)  # patterns rooted at the function, not at functions inside it
        return function in cursor.captures(function).get("returns", [])


QUERIES = Path(__file__).resolve().parent / "queries"
_INHERITS = re.compile(r"^;[ \t]*inherits:[ \t]*([\w, \t]+)$", re.M)
# The shape most patterns take: a node type and what it means, `(type) @capture`. Patterns with
# fields or predicates (stubs.scm's `@returns`) are only read through the compiled query.
_PATTERN = re.compile(r"^\((\w+)\)\s*@([\w.]+)\s*$", re.M)


def query_source(language: str, name: str) -> str:
    """The text of `queries/<language>/<name>`, preceded by the files it inherits."""
    text = (QUERIES / language / name).read_text(encoding="utf-8")
    inherits = _INHERITS.search(text)
    parents = [query_source(parent.strip(), name) for parent in inherits.group(1).split(",")] if inherits else []
    return "\n".join([*parents, text])


def query_captures(language: str, name: str) -> list[tuple[str, str]]:
    """(node type, capture) pairs of `queries/<language>/<name>`, inherited ones first."""
    return _PATTERN.findall(query_source(language, name))


@functools.cache
def syntax_for(lang: Language) -> Syntax | None:
    """A language's Syntax from its query files; None without a grammar or a query folder."""
    language = lang.name
    if lang.ts_language is None or not (QUERIES / language).is_dir():
        return None
    definitions = query_captures(language, "definitions.scm")
    return Syntax(
        definitions={t: c.removeprefix("definition.") for t, c in definitions if c.startswith("definition.")},
        wrappers=frozenset(t for t, c in definitions if c == "wrapper"),
        containers=frozenset(t for t, _ in query_captures(language, "statements.scm")),
        imports=frozenset(t for t, _ in query_captures(language, "imports.scm")),
        identifiers=frozenset(t for t, _ in query_captures(language, "identifiers.scm")),
        bodies=frozenset(t for t, c in query_captures(language, "stubs.scm") if c == "body"),
        stubs=tree_sitter.Query(lang.ts_language, query_source(language, "stubs.scm")),
        docstrings=(QUERIES / language / "docstrings.scm").is_file(),
    )


def node_text(node: tree_sitter.Node | None) -> str:
    """A node's source text ('' for no node)."""
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


def is_comment(node: tree_sitter.Node) -> bool:
    return "comment" in node.type


def node_type_query(lang: Language, node_types: Iterator[str] | list[str] | frozenset[str]) -> tree_sitter.Query:
    """A capture-everything query, keeping only node types this grammar actually has."""
    assert lang.ts_language is not None
    valid = sorted({t for t in node_types if lang.ts_language.id_for_node_kind(t, True) is not None})
    return tree_sitter.Query(lang.ts_language, "[" + " ".join(f"({t})" for t in valid) + "] @n")


@functools.cache
def definition_query(lang: Language) -> tree_sitter.Query:
    syntax = syntax_for(lang)
    assert syntax is not None
    return node_type_query(lang, list(syntax.definitions))


@functools.cache
def identifier_query(lang: Language) -> tree_sitter.Query:
    syntax = syntax_for(lang)
    assert syntax is not None
    return node_type_query(lang, list(syntax.identifiers))


@functools.cache
def import_query(lang: Language) -> tree_sitter.Query:
    syntax = syntax_for(lang)
    assert syntax is not None
    return node_type_query(lang, list(syntax.imports))


def captures(query: tree_sitter.Query, node: tree_sitter.Node) -> list[tree_sitter.Node]:
    return tree_sitter.QueryCursor(query).captures(node).get("n", [])


def error_nodes(tree: tree_sitter.Tree) -> list[tree_sitter.Node]:
    """ERROR and MISSING nodes, descending only into subtrees that contain an error."""
    found: list[tree_sitter.Node] = []
    stack = [tree.root_node] if tree.root_node.has_error else []
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            found.append(node)
            if node.is_missing:
                continue
        stack.extend(c for c in reversed(node.children) if c.has_error or c.is_missing)
    return sorted(found, key=lambda n: n.start_byte)


def enclosing_statement(node: tree_sitter.Node, syntax: Syntax) -> tree_sitter.Node:
    """The smallest ancestor-or-self that sits directly in a statement list (or at top level)."""
    current = node
    while current.parent is not None and current.parent.parent is not None:
        if current.parent.type in syntax.containers and not current.parent.is_error:
            return current
        current = current.parent
    return current
