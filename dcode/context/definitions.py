"""Definitions in a parse tree: their kind, name, qualified name, body, signature and docs."""

from __future__ import annotations

import re
from dataclasses import dataclass

import tree_sitter

from dcode.context.languages import Language
from dcode.context.syntax import (
    CLASS_LIKE, SCOPE_KINDS, Syntax, captures, definition_query, is_comment, node_text, syntax_for,
)

_NAME_TYPES = frozenset(
    {"identifier", "field_identifier", "type_identifier", "qualified_identifier", "destructor_name",
     "operator_name", "property_identifier", "namespace_identifier", "primitive_type"}
)  # fmt: skip
_TAG_TYPES = frozenset({"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"})
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function", "class"})
SIGNATURE_MAX_CHARS = 400
DOC_MAX_CHARS = 300


@dataclass
class DefNode:
    """A definition found in a tree. Byte offsets; `outer` includes decorators/export/template."""

    node: tree_sitter.Node
    outer: tree_sitter.Node
    kind: str
    name: str
    body: tree_sitter.Node | None
    qualname: str = ""
    parent: DefNode | None = None
    name_node: tree_sitter.Node | None = None

    @property
    def start_byte(self) -> int:
        return self.outer.start_byte

    @property
    def end_byte(self) -> int:
        return self.outer.end_byte


def _declarator_name(node: tree_sitter.Node | None) -> tuple[str, tree_sitter.Node | None]:
    """Follow C/C++ declarator chains (pointer, function, reference...) down to the name."""
    seen = 0
    while node is not None and seen < 16:
        if node.type in _NAME_TYPES:
            return node_text(node), node
        if node.type == "function_declarator":
            return _declarator_name(node.child_by_field_name("declarator"))
        inner = node.child_by_field_name("declarator")
        if inner is None:
            inner = next((c for c in node.named_children if "declarator" in c.type or c.type in _NAME_TYPES), None)
        node, seen = inner, seen + 1
    return "", None


def _has_function_declarator(node: tree_sitter.Node) -> bool:
    current: tree_sitter.Node | None = node.child_by_field_name("declarator")
    while current is not None:
        if current.type == "function_declarator":
            return True
        current = current.child_by_field_name("declarator")
    return False


def _strip_generics(type_text: str) -> str:
    """`Vec<T>` -> Vec, `std::fmt::Display` -> Display, `*T` -> T."""
    type_text = re.sub(r"<.*>", "", type_text, flags=re.S).strip().lstrip("*&").strip()
    return re.split(r"::|\.", type_text)[-1].strip() if type_text else ""


def _body_of(node: tree_sitter.Node) -> tree_sitter.Node | None:
    if node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        return value.child_by_field_name("body") if value is not None else None
    if node.type == "type_spec":
        typ = node.child_by_field_name("type")
        if typ is None:
            return None
        if typ.type == "struct_type":
            return next((c for c in typ.named_children if c.type == "field_declaration_list"), None)
        return typ if typ.type == "interface_type" else None
    return node.child_by_field_name("body")


def _kind_of(node: tree_sitter.Node, kind: str) -> str:
    if node.type == "type_spec":
        typ = node.child_by_field_name("type")
        if typ is not None and typ.type in ("struct_type", "interface_type"):
            return typ.type.split("_")[0]
    if node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        return "class" if value is not None and value.type == "class" else "function"
    return kind


def _def_name(node: tree_sitter.Node) -> tuple[str, tree_sitter.Node | None]:
    """The (possibly qualified, `A::b`) name of a definition node and its node; '' when anonymous."""
    if node.type == "impl_item":
        type_node = node.child_by_field_name("type")
        return _strip_generics(node_text(type_node)), type_node
    if node.type in ("function_definition", "declaration", "field_declaration", "type_definition") and (
        node.child_by_field_name("declarator") is not None
    ):
        return _declarator_name(node.child_by_field_name("declarator"))
    name_node = node.child_by_field_name("name")
    return node_text(name_node), name_node


def describe_definition(node: tree_sitter.Node, syntax: Syntax) -> DefNode | None:
    """A DefNode for `node` if it is a named definition in this grammar, else None."""
    kind = syntax.definitions.get(node.type)
    if kind is None:
        return None
    if node.type == "variable_declarator":
        value = node.child_by_field_name("value")
        if value is None or value.type not in _FUNCTION_VALUES:
            return None
    elif node.type in ("declaration", "field_declaration") and not _has_function_declarator(node):
        return None  # a variable, not a function prototype
    elif node.type in _TAG_TYPES and node.child_by_field_name("body") is None:
        return None  # `struct foo x;` is a use, not a definition
    name, name_node = _def_name(node)
    if not name:
        return None
    return DefNode(node, _outer(node, syntax), _kind_of(node, kind), name, _body_of(node), name_node=name_node)


def _outer(node: tree_sitter.Node, syntax: Syntax) -> tree_sitter.Node:
    """Climb through wrappers that belong to this definition alone (decorators, export...)."""
    outer = node
    while outer.parent is not None and outer.parent.type in syntax.wrappers:
        parent = outer.parent
        # `const a = () => 1, b = 2` or Go's `type ( A int; B int )` hold several definitions.
        shared = sum(1 for c in parent.named_children if c.type == node.type) != 1 or any(
            c.type == "(" for c in parent.children
        )
        if shared and parent.type in ("lexical_declaration", "variable_declaration", "type_declaration"):
            break
        outer = parent
    return outer


def _qualify(defn: DefNode, parent: DefNode | None) -> str:
    """Dotted qualified name: Class.method, Type.method for Go/Rust/C++ out-of-line methods."""
    parts = [p for p in re.split(r"::|\.", defn.name) if p]
    receiver = defn.node.child_by_field_name("receiver") if defn.node.type == "method_declaration" else None
    if receiver is not None:  # Go: func (t *T) M() is T.M
        typ = next((c.child_by_field_name("type") for c in receiver.named_children), None)
        if typ is not None:
            parts = [_strip_generics(node_text(typ)), *parts]
    prefix = parent.qualname if parent is not None else ""
    joined = ".".join(parts)
    return f"{prefix}.{joined}" if prefix else joined


def definition_nodes(tree: tree_sitter.Tree, lang: Language) -> list[DefNode]:
    """All named definitions in source order, with dotted qualified names from their nesting."""
    syntax = syntax_for(lang)
    if syntax is None:
        return []
    nodes = sorted(captures(definition_query(lang), tree.root_node), key=lambda n: (n.start_byte, -n.end_byte))
    result: list[DefNode] = []
    stack: list[DefNode] = []
    for node in nodes:
        defn = describe_definition(node, syntax)
        if defn is None:
            continue
        while stack and stack[-1].node.end_byte <= node.start_byte:
            stack.pop()
        _attach(defn, stack[-1] if stack else None)
        result.append(defn)
        if defn.kind in SCOPE_KINDS:
            stack.append(defn)
    return result


def enclosing_definitions(tree: tree_sitter.Tree, lang: Language, start_byte: int, end_byte: int) -> list[DefNode]:
    """Definitions containing [start_byte, end_byte), outermost first."""
    syntax = syntax_for(lang)
    if syntax is None:
        return []
    node: tree_sitter.Node | None = tree.root_node.descendant_for_byte_range(start_byte, max(start_byte, end_byte))
    chain: list[DefNode] = []
    while node is not None:
        if node.type in syntax.definitions and node.start_byte <= start_byte and end_byte <= node.end_byte:
            defn = describe_definition(node, syntax)
            if defn is not None:
                chain.append(defn)
        node = node.parent
    chain.reverse()
    parent: DefNode | None = None
    for defn in chain:
        _attach(defn, parent)
        if defn.kind in SCOPE_KINDS:
            parent = defn
    return chain


def _attach(defn: DefNode, parent: DefNode | None) -> None:
    defn.parent = parent
    defn.qualname = _qualify(defn, parent)
    if parent is not None and defn.kind == "function" and parent.kind in CLASS_LIKE - {"namespace", "module"}:
        defn.kind = "method"


def body_statements(body: tree_sitter.Node) -> list[tree_sitter.Node]:
    """The statements and comments inside a body (braces, keywords and punctuation dropped)."""
    statements: list[tree_sitter.Node] = []
    for child in body.named_children:
        if child.type == "statement_list":  # Go wraps a block's statements (not its comments)
            statements.extend(child.named_children)
        else:
            statements.append(child)
    return sorted(statements, key=lambda n: n.start_byte)


def docstring_node(defn: DefNode, syntax: Syntax) -> tree_sitter.Node | None:
    """Python's docstring statement (first statement of the body when it is a string)."""
    if not syntax.docstrings or defn.body is None:
        return None
    first = next((c for c in defn.body.named_children if not is_comment(c)), None)
    if first is None or first.type != "expression_statement" or first.named_child_count != 1:
        return None
    return first if first.named_children[0].type in ("string", "concatenated_string") else None


def signature_of(defn: DefNode, source: bytes) -> str:
    """The definition's header: from its first byte (decorators included) to where its body starts."""
    end = defn.body.start_byte if defn.body is not None else defn.outer.end_byte
    if defn.node.type == "variable_declarator" and defn.body is not None:
        end = defn.body.start_byte
    sig = source[defn.outer.start_byte : end].decode("utf-8", "replace").rstrip()
    if defn.body is None:
        sig = sig.rstrip(";").rstrip()
    elif sig.endswith("=>"):
        sig = sig[:-2].rstrip()
    if len(sig) > SIGNATURE_MAX_CHARS:
        sig = sig[:SIGNATURE_MAX_CHARS].rstrip() + " …"
    return sig


_COMMENT_DECOR = re.compile(r"^\s*(?:///?|//!|/\*\*?|\*/|\*|#|--)\s?")


def clean_doc(raw: str) -> str:
    """First paragraph of a docstring or doc comment, markers and quotes removed, capped."""
    text = raw.strip()
    for quote in ('"""', "'''", '"', "'"):
        prefix_match = re.match(r"^[rRbBuUfF]*" + re.escape(quote), text)
        if prefix_match and text.endswith(quote) and len(text) >= len(prefix_match.group()) + len(quote):
            text = text[prefix_match.end() : len(text) - len(quote)]
            break
    lines = [_COMMENT_DECOR.sub("", line).rstrip().rstrip("*/").rstrip() for line in text.splitlines()]
    paragraph: list[str] = []
    for line in lines:
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    doc = " ".join(paragraph)
    return doc[:DOC_MAX_CHARS].rstrip() + (" …" if len(doc) > DOC_MAX_CHARS else "")


def leading_nodes(outer: tree_sitter.Node) -> list[tree_sitter.Node]:
    """Comments and attributes directly above a definition (no blank line between), in order."""
    found: list[tree_sitter.Node] = []
    node = outer
    prev = outer.prev_sibling
    while prev is not None:
        # A line comment's node may include its newline, making the gap 0 lines.
        if node.start_point[0] - prev.end_point[0] > 1:
            break
        if not (is_comment(prev) or prev.type in ("attribute_item", "decorator", "marker_annotation")):
            break
        if prev.end_point[0] == prev.start_point[0] and _shares_line_with_code(prev):
            break  # a trailing comment of the previous statement, not a doc comment
        found.append(prev)
        node, prev = prev, prev.prev_sibling
    found.reverse()
    return found


def _shares_line_with_code(comment: tree_sitter.Node) -> bool:
    prev = comment.prev_sibling
    return prev is not None and prev.end_point[0] == comment.start_point[0]


def leading_comments(outer: tree_sitter.Node) -> list[tree_sitter.Node]:
    """The doc comment(s) of a definition: contiguous comments right above it."""
    return [n for n in leading_nodes(outer) if is_comment(n)]


def doc_of(defn: DefNode, syntax: Syntax, source: bytes) -> str | None:
    doc_node = docstring_node(defn, syntax)
    if doc_node is not None:
        return clean_doc(source[doc_node.start_byte : doc_node.end_byte].decode("utf-8", "replace")) or None
    comments = leading_comments(defn.outer)
    if not comments:
        return None
    raw = source[comments[0].start_byte : comments[-1].end_byte].decode("utf-8", "replace")
    return clean_doc(raw) or None
