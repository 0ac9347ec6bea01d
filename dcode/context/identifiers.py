"""Identifiers and imports in a parse tree: which names a file uses, in which role, and which
modules it imports (what context assembly and the repository index look names up by)."""

from __future__ import annotations

import re

import tree_sitter

from dcode.context.languages import Language
from dcode.context.syntax import captures, identifier_query, import_query, node_text, syntax_for

def import_nodes(tree: tree_sitter.Tree, lang: Language) -> list[tree_sitter.Node]:
    """Import-like statements in source order (Rust `mod x;` counts; `mod x { }` does not)."""
    if syntax_for(lang) is None:
        return []
    nodes = sorted(captures(import_query(lang), tree.root_node), key=lambda n: n.start_byte)
    return [n for n in nodes if not (n.type == "mod_item" and n.child_by_field_name("body") is not None)]


def identifier_nodes(tree: tree_sitter.Tree, lang: Language, start_byte: int, end_byte: int) -> list[tree_sitter.Node]:
    """Identifier nodes within a byte range, in source order."""
    if syntax_for(lang) is None:
        return []
    cursor = tree_sitter.QueryCursor(identifier_query(lang))
    cursor.set_byte_range(start_byte, end_byte)
    nodes = cursor.captures(tree.root_node).get("n", [])
    return sorted(
        (n for n in nodes if start_byte <= n.start_byte and n.end_byte <= end_byte), key=lambda n: n.start_byte
    )


# Where a name is an attribute/field/method of something (`obj.name`): parent type -> field.
_ATTRIBUTE_FIELDS = {
    "attribute": "attribute", "member_expression": "property", "field_expression": "field",
    "selector_expression": "field", "field_access": "field", "method_invocation": "name",
}  # fmt: skip
# Parents whose `left`/`name`/`pattern`/`declarator` child is a name being bound, not used.
_BINDERS = frozenset(
    {"assignment", "augmented_assignment", "for_statement", "for_in_clause", "variable_declarator",
     "let_declaration", "short_var_declaration", "var_spec", "const_spec", "init_declarator", "declaration",
     "keyword_argument", "range_clause", "enhanced_for_statement", "assignment_expression", "for_range_loop",
     "as_pattern_target", "pointer_declarator", "reference_declarator", "array_declarator", "with_item",
     "named_expression", "field_declaration", "local_variable_declaration", "catch_clause", "except_clause"}
)  # fmt: skip
_PATTERN_CONTAINERS = frozenset(
    {"pattern_list", "tuple_pattern", "list_pattern", "expression_list", "array_pattern", "object_pattern",
     "list_splat_pattern", "tuple", "parenthesized_expression", "as_pattern"}
)  # fmt: skip
_BINDING_FIELDS = ("left", "name", "pattern", "declarator", "alias")


def identifier_role(node: tree_sitter.Node) -> str:
    """'attr' for `obj.name`, 'bind' where a local name is introduced, else 'use'."""
    parent = node.parent
    if parent is None:
        return "use"
    attr_field = _ATTRIBUTE_FIELDS.get(parent.type)
    is_attribute = attr_field is not None and parent.child_by_field_name(attr_field) == node
    # Java's `m(x)` is a method_invocation without an object: a plain call, not an attribute.
    if is_attribute and (parent.type != "method_invocation" or parent.child_by_field_name("object") is not None):
        return "attr"
    if (
        "parameter" in parent.type and parent.child_by_field_name("type") != node
    ) or parent.type == "as_pattern_target":
        return "bind"
    child, current, depth = node, parent, 0
    while current.type in _PATTERN_CONTAINERS and current.parent is not None and depth < 3:
        child, current, depth = current, current.parent, depth + 1
    if current.type in _BINDERS and any(current.child_by_field_name(f) == child for f in _BINDING_FIELDS):
        return "bind"
    return "use"


_RECEIVER_FIELDS = ("object", "value", "operand", "argument")


def attribute_receiver(node: tree_sitter.Node) -> str | None:
    """For `recv.name`, the text of `recv` (when it is a plain name), else None."""
    parent = node.parent
    if parent is None:
        return None
    for field_name in _RECEIVER_FIELDS:
        receiver = parent.child_by_field_name(field_name)
        if receiver is not None and receiver != node:
            return node_text(receiver) if receiver.child_count == 0 or receiver.type in ("self", "this") else None
    return None


def identifier_texts(tree: tree_sitter.Tree, lang: Language) -> set[str]:
    """Every identifier used in the file (code only: comments and strings are not identifiers)."""
    if syntax_for(lang) is None:
        return set()
    return {node_text(n) for n in captures(identifier_query(lang), tree.root_node)}


def import_modules(node: tree_sitter.Node) -> tuple[list[str], list[str]]:
    """(module paths, imported names) of one import statement, for matching imports to files."""
    kind = node.type
    if kind in ("import_from_statement", "future_import_statement"):  # Python `from m import a, b`
        names = [node_text(n.child_by_field_name("name") or n) for n in node.children_by_field_name("name")]
        return [node_text(node.child_by_field_name("module_name")) or "__future__"], names
    if kind == "import_statement" and node.child_by_field_name("source") is None:  # Python `import a.b`
        names = [node_text(n.child_by_field_name("name") or n) for n in node.children_by_field_name("name")]
        return names, []
    if kind == "import_statement":  # JavaScript/TypeScript `import {a} from "./m"`
        # The exported name (not a local alias) is what the other file defines.
        names = [node_text(n.child_by_field_name("name")) for n in _descendants(node, "import_specifier")]
        return [node_text(node.child_by_field_name("source")).strip("'\"`")], names
    if kind == "preproc_include":
        return [node_text(node.child_by_field_name("path")).strip('"<>')], []
    if kind == "import_declaration":  # Go (import specs) or Java (scoped identifier)
        specs = _descendants(node, "import_spec")
        if specs:
            return [node_text(s.child_by_field_name("path")).strip('"`') for s in specs], []
        return [node_text(node).removeprefix("import").removesuffix(";").replace("static ", "").strip()], []
    if kind == "mod_item":  # Rust `mod parser;` pulls in parser.rs
        return [node_text(node.child_by_field_name("name"))], []
    argument = node.child_by_field_name("argument")
    if argument is not None:  # Rust `use a::b::{c, d}`
        return [node_text(argument)], re.findall(r"\w+", node_text(argument.child_by_field_name("list")))
    return [node_text(node)], []


def _descendants(node: tree_sitter.Node, node_type: str) -> list[tree_sitter.Node]:
    found: list[tree_sitter.Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == node_type:
            found.append(current)
        stack.extend(reversed(current.named_children))
    return found
