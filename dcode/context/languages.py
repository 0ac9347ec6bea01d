"""Language detection, tree-sitter parsing and the per-language syntax knowledge dcode relies on.

Everything language-specific lives here so that the index, the target resolver and the context
gatherer can stay generic: which node types are definitions, where a definition's body and name
are, which nodes hold statements (used to widen syntax errors), which nodes are imports.

Grammars come from the per-language wheels (tree-sitter-python, ...), loaded lazily and once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tree_sitter

from dcode.errors import InputError

PLAIN_TEXT = "text"


@dataclass(frozen=True)
class Language:
    """A source language. `ts_language` is None for languages dcode only knows the comments of."""

    name: str
    ts_language: tree_sitter.Language | None = field(default=None, compare=False, repr=False)
    line_comments: tuple[str, ...] = ()
    block_comments: tuple[tuple[str, str], ...] = ()

    @property
    def has_grammar(self) -> bool:
        return self.ts_language is not None

    @property
    def comment_prefixes(self) -> tuple[str, ...]:
        """Every token that can open a comment: line-comment prefixes, then block openers."""
        return self.line_comments + tuple(open_ for open_, _ in self.block_comments)


@dataclass(frozen=True)
class _Spec:
    extensions: tuple[str, ...]
    interpreters: tuple[str, ...]
    line_comments: tuple[str, ...]
    block_comments: tuple[tuple[str, str], ...]
    grammar: Callable[[], object] | None


_C_COMMENTS = (("//",), (("/*", "*/"),))


def _grammar(module: str, attr: str = "language") -> Callable[[], object]:
    def load() -> object:
        import importlib

        return getattr(importlib.import_module(module), attr)()

    return load


_SPECS: dict[str, _Spec] = {
    "python": _Spec((".py", ".pyi", ".pyw"), ("python", "pypy"), ("#",), (), _grammar("tree_sitter_python")),
    "javascript": _Spec(
        (".js", ".mjs", ".cjs", ".jsx"), ("node", "nodejs"), *_C_COMMENTS, _grammar("tree_sitter_javascript")
    ),
    "typescript": _Spec(
        (".ts", ".mts", ".cts"),
        ("ts-node", "deno", "tsx", "bun"),
        *_C_COMMENTS,
        _grammar("tree_sitter_typescript", "language_typescript"),
    ),
    "tsx": _Spec((".tsx",), (), *_C_COMMENTS, _grammar("tree_sitter_typescript", "language_tsx")),
    "rust": _Spec((".rs",), (), *_C_COMMENTS, _grammar("tree_sitter_rust")),
    "go": _Spec((".go",), (), *_C_COMMENTS, _grammar("tree_sitter_go")),
    "java": _Spec((".java",), (), *_C_COMMENTS, _grammar("tree_sitter_java")),
    "c": _Spec((".c", ".h"), (), *_C_COMMENTS, _grammar("tree_sitter_c")),
    "cpp": _Spec(
        (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".tpp", ".inl"),
        (),
        *_C_COMMENTS,
        _grammar("tree_sitter_cpp"),
    ),
    # Languages without a bundled grammar: dcode still knows their comments (hole markers work),
    # and gives plain-text context for them.
    "shell": _Spec((".sh", ".bash", ".zsh"), ("sh", "bash", "zsh", "dash", "ksh"), ("#",), (), None),
    "ruby": _Spec((".rb",), ("ruby",), ("#",), (), None),
    "perl": _Spec((".pl", ".pm"), ("perl",), ("#",), (), None),
    "lua": _Spec((".lua",), ("lua",), ("--",), (("--[[", "]]"),), None),
    "sql": _Spec((".sql",), (), ("--",), (("/*", "*/"),), None),
    "haskell": _Spec((".hs",), ("runhaskell",), ("--",), (("{-", "-}"),), None),
    "yaml": _Spec((".yaml", ".yml"), (), ("#",), (), None),
    "toml": _Spec((".toml",), (), ("#",), (), None),
    # Unknown files: accept every common comment syntax so a marker is found whatever it is.
    PLAIN_TEXT: _Spec((), (), ("#", "//", "--", ";"), (("/*", "*/"), ("<!--", "-->")), None),
}

_ALIASES = {
    "py": "python", "python3": "python", "js": "javascript", "jsx": "javascript", "node": "javascript",
    "ts": "typescript", "rs": "rust", "golang": "go", "c++": "cpp", "cxx": "cpp", "cc": "cpp",
    "h": "c", "sh": "shell", "bash": "shell", "rb": "ruby", "plain": PLAIN_TEXT, "txt": PLAIN_TEXT,
}  # fmt: skip

_BY_EXTENSION = {ext: name for name, spec in _SPECS.items() for ext in spec.extensions}
_BY_INTERPRETER = {interp: name for name, spec in _SPECS.items() for interp in spec.interpreters}

# A .h file is C unless it uses something only C++ has; the C grammar chokes on classes/templates.
_CPP_HEADER_HINT = re.compile(
    r"^\s*(?:class\s+\w+[^;]*$|namespace\b|template\s*<|(?:public|private|protected)\s*:)|std::", re.M
)


def grammar_names() -> list[str]:
    """Languages with a tree-sitter grammar."""
    return [name for name, spec in _SPECS.items() if spec.grammar is not None]


def known_language_names() -> list[str]:
    return sorted(_SPECS)


def get_language(name: str) -> Language:
    """The Language called `name` (or an alias); grammars are loaded once per process."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _SPECS:
        raise InputError(f"unknown language '{name}' (known: {', '.join(known_language_names())})")
    return _load_language(key)


@functools.cache
def _load_language(key: str) -> Language:
    spec = _SPECS[key]
    ts_lang = tree_sitter.Language(spec.grammar()) if spec.grammar is not None else None
    return Language(key, ts_lang, spec.line_comments, spec.block_comments)


def language_for_extension(path: Path | str) -> str | None:
    """Language name from the file name alone (no content), or None."""
    return _BY_EXTENSION.get(Path(path).suffix.lower())


def language_from_shebang(first_line: str) -> str | None:
    """`#!/usr/bin/env -S python3 -u` -> "python"; None when there is no usable shebang."""
    if not first_line.startswith("#!"):
        return None
    words = first_line[2:].strip().split()
    if words and words[0].rsplit("/", 1)[-1] == "env":
        # Skip env's own options and VAR=value assignments to reach the interpreter.
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if not words:
        return None
    interpreter = words[0].rsplit("/", 1)[-1]
    interpreter = re.sub(r"[\d.]+$", "", interpreter)  # python3.11 -> python
    return _BY_INTERPRETER.get(interpreter)


def detect_language(path: Path, text: str | None = None, override: str | None = None) -> Language:
    """Pick the language by override, then extension, then shebang; plain text when unknown."""
    if override:
        return get_language(override)
    name = language_for_extension(path)
    if name == "c" and Path(path).suffix.lower() == ".h" and text and _CPP_HEADER_HINT.search(text):
        name = "cpp"
    if name is None and text:
        name = language_from_shebang(text.split("\n", 1)[0])
    return get_language(name or PLAIN_TEXT)


_PARSERS: dict[str, tree_sitter.Parser] = {}


def parse(text: str | bytes, lang: Language) -> tree_sitter.Tree | None:
    """Parse with the language's grammar (one cached Parser per language); None without one."""
    if lang.ts_language is None:
        return None
    parser = _PARSERS.get(lang.name)
    if parser is None:
        parser = _PARSERS[lang.name] = tree_sitter.Parser(lang.ts_language)
    source = text.encode("utf-8") if isinstance(text, str) else text
    return parser.parse(source)


# --------------------------------------------------------------------------------------------
# Syntax tables
# --------------------------------------------------------------------------------------------

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
    identifiers: tuple[str, ...]
    docstrings: bool = False  # Python: the first string statement of a body documents it


_JS_DEFS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "class_declaration": "class",
    "method_definition": "method",
    "variable_declarator": "function",  # only when its value is a function or class
}
_TS_DEFS = {
    **_JS_DEFS,
    "abstract_class_declaration": "class",
    "interface_declaration": "interface",
    "type_alias_declaration": "type",
    "enum_declaration": "enum",
    "function_signature": "function",
    "method_signature": "method",
    "abstract_method_signature": "method",
    "internal_module": "namespace",
}
_JS_CONTAINERS = frozenset(
    {"program", "statement_block", "class_body", "switch_case", "switch_default", "interface_body", "enum_body"}
)
_JS_IDENTIFIERS = ("identifier", "property_identifier", "shorthand_property_identifier", "type_identifier")
_C_DEFS = {
    "function_definition": "function",
    "struct_specifier": "struct",
    "union_specifier": "union",
    "enum_specifier": "enum",
    "type_definition": "type",
    "declaration": "function",  # only prototypes (a function declarator)
    "preproc_function_def": "macro",
    "preproc_def": "macro",
}
_C_CONTAINERS = frozenset(
    {"translation_unit", "compound_statement", "declaration_list", "field_declaration_list", "case_statement",
     "preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif"}
)  # fmt: skip

_SYNTAX: dict[str, Syntax] = {
    "python": Syntax(
        {"function_definition": "function", "class_definition": "class"},
        frozenset({"decorated_definition"}),
        frozenset({"module", "block"}),
        frozenset({"import_statement", "import_from_statement", "future_import_statement"}),
        ("identifier",),
        docstrings=True,
    ),
    "javascript": Syntax(
        _JS_DEFS,
        frozenset({"export_statement", "lexical_declaration", "variable_declaration"}),
        _JS_CONTAINERS,
        frozenset({"import_statement"}),
        _JS_IDENTIFIERS,
    ),
    "typescript": Syntax(
        _TS_DEFS,
        frozenset({"export_statement", "lexical_declaration", "variable_declaration", "ambient_declaration"}),
        _JS_CONTAINERS,
        frozenset({"import_statement"}),
        _JS_IDENTIFIERS,
    ),
    "rust": Syntax(
        {
            "function_item": "function",
            "function_signature_item": "function",
            "struct_item": "struct",
            "enum_item": "enum",
            "union_item": "union",
            "trait_item": "trait",
            "impl_item": "impl",
            "mod_item": "module",
            "type_item": "type",
            "macro_definition": "macro",
            "const_item": "constant",
            "static_item": "constant",
        },
        frozenset(),
        frozenset({"source_file", "block", "declaration_list"}),
        frozenset({"use_declaration", "mod_item", "extern_crate_declaration"}),
        ("identifier", "type_identifier", "field_identifier"),
    ),  # fmt: skip
    "go": Syntax(
        {
            "function_declaration": "function",
            "method_declaration": "method",
            "type_spec": "type",
            "method_elem": "method",
        },
        frozenset({"type_declaration"}),
        frozenset({"source_file", "statement_list", "block", "expression_case", "type_case", "default_case"}),
        frozenset({"import_declaration"}),
        ("identifier", "type_identifier", "field_identifier", "package_identifier"),
    ),  # fmt: skip
    "java": Syntax(
        {
            "class_declaration": "class",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "record",
            "annotation_type_declaration": "interface",
            "method_declaration": "method",
            "constructor_declaration": "constructor",
        },
        frozenset(),
        frozenset(
            {
                "program",
                "block",
                "class_body",
                "interface_body",
                "enum_body_declarations",
                "constructor_body",
                "switch_block_statement_group",
            }
        ),
        frozenset({"import_declaration"}),
        ("identifier", "type_identifier"),
    ),  # fmt: skip
    "c": Syntax(
        _C_DEFS,
        frozenset(),
        _C_CONTAINERS,
        frozenset({"preproc_include"}),
        ("identifier", "type_identifier", "field_identifier"),
    ),
    "cpp": Syntax(
        {
            **_C_DEFS,
            "class_specifier": "class",
            "namespace_definition": "namespace",
            "field_declaration": "method",  # only method declarations inside a class
            "alias_declaration": "type",
        },
        frozenset({"template_declaration"}),
        _C_CONTAINERS,
        frozenset({"preproc_include", "using_declaration"}),
        ("identifier", "type_identifier", "field_identifier", "namespace_identifier"),
    ),
}
_SYNTAX["tsx"] = _SYNTAX["typescript"]


def syntax_for(lang: Language) -> Syntax | None:
    return _SYNTAX.get(lang.name) if lang.ts_language is not None else None


def is_comment(node: tree_sitter.Node) -> bool:
    return "comment" in node.type


# --------------------------------------------------------------------------------------------
# Definitions
# --------------------------------------------------------------------------------------------

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


def node_text(node: tree_sitter.Node | None) -> str:
    """A node's source text ('' for no node)."""
    return node.text.decode("utf-8", "replace") if node is not None and node.text is not None else ""


_text = node_text


def _declarator_name(node: tree_sitter.Node | None) -> tuple[str, tree_sitter.Node | None]:
    """Follow C/C++ declarator chains (pointer, function, reference...) down to the name."""
    seen = 0
    while node is not None and seen < 16:
        if node.type in _NAME_TYPES:
            return _text(node), node
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
        return _strip_generics(_text(type_node)), type_node
    if node.type in ("function_definition", "declaration", "field_declaration", "type_definition") and (
        node.child_by_field_name("declarator") is not None
    ):
        return _declarator_name(node.child_by_field_name("declarator"))
    name_node = node.child_by_field_name("name")
    return _text(name_node), name_node


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
            parts = [_strip_generics(_text(typ)), *parts]
    prefix = parent.qualname if parent is not None else ""
    joined = ".".join(parts)
    return f"{prefix}.{joined}" if prefix else joined


def _ts_query(lang: Language, node_types: Iterator[str] | list[str] | frozenset[str]) -> tree_sitter.Query:
    """A capture-everything query, keeping only node types this grammar actually has."""
    assert lang.ts_language is not None
    valid = sorted({t for t in node_types if lang.ts_language.id_for_node_kind(t, True) is not None})
    return tree_sitter.Query(lang.ts_language, "[" + " ".join(f"({t})" for t in valid) + "] @n")


@functools.cache
def _definition_query(lang: Language) -> tree_sitter.Query:
    syntax = syntax_for(lang)
    assert syntax is not None
    return _ts_query(lang, list(syntax.definitions))


@functools.cache
def _identifier_query(lang: Language) -> tree_sitter.Query:
    syntax = syntax_for(lang)
    assert syntax is not None
    return _ts_query(lang, list(syntax.identifiers))


@functools.cache
def _import_query(lang: Language) -> tree_sitter.Query:
    syntax = syntax_for(lang)
    assert syntax is not None
    return _ts_query(lang, list(syntax.imports))


def _captures(query: tree_sitter.Query, node: tree_sitter.Node) -> list[tree_sitter.Node]:
    return tree_sitter.QueryCursor(query).captures(node).get("n", [])


def definition_nodes(tree: tree_sitter.Tree, lang: Language) -> list[DefNode]:
    """All named definitions in source order, with dotted qualified names from their nesting."""
    syntax = syntax_for(lang)
    if syntax is None:
        return []
    nodes = sorted(_captures(_definition_query(lang), tree.root_node), key=lambda n: (n.start_byte, -n.end_byte))
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


def import_nodes(tree: tree_sitter.Tree, lang: Language) -> list[tree_sitter.Node]:
    """Import-like statements in source order (Rust `mod x;` counts; `mod x { }` does not)."""
    if syntax_for(lang) is None:
        return []
    nodes = sorted(_captures(_import_query(lang), tree.root_node), key=lambda n: n.start_byte)
    return [n for n in nodes if not (n.type == "mod_item" and n.child_by_field_name("body") is not None)]


def identifier_nodes(tree: tree_sitter.Tree, lang: Language, start_byte: int, end_byte: int) -> list[tree_sitter.Node]:
    """Identifier nodes within a byte range, in source order."""
    if syntax_for(lang) is None:
        return []
    cursor = tree_sitter.QueryCursor(_identifier_query(lang))
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
            return _text(receiver) if receiver.child_count == 0 or receiver.type in ("self", "this") else None
    return None


def identifier_texts(tree: tree_sitter.Tree, lang: Language) -> set[str]:
    """Every identifier used in the file (code only: comments and strings are not identifiers)."""
    if syntax_for(lang) is None:
        return set()
    return {_text(n) for n in _captures(_identifier_query(lang), tree.root_node)}


def import_modules(node: tree_sitter.Node) -> tuple[list[str], list[str]]:
    """(module paths, imported names) of one import statement, for matching imports to files."""
    kind = node.type
    if kind in ("import_from_statement", "future_import_statement"):  # Python `from m import a, b`
        names = [_text(n.child_by_field_name("name") or n) for n in node.children_by_field_name("name")]
        return [_text(node.child_by_field_name("module_name")) or "__future__"], names
    if kind == "import_statement" and node.child_by_field_name("source") is None:  # Python `import a.b`
        names = [_text(n.child_by_field_name("name") or n) for n in node.children_by_field_name("name")]
        return names, []
    if kind == "import_statement":  # JavaScript/TypeScript `import {a} from "./m"`
        # The exported name (not a local alias) is what the other file defines.
        names = [_text(n.child_by_field_name("name")) for n in _descendants(node, "import_specifier")]
        return [_text(node.child_by_field_name("source")).strip("'\"`")], names
    if kind == "preproc_include":
        return [_text(node.child_by_field_name("path")).strip('"<>')], []
    if kind == "import_declaration":  # Go (import specs) or Java (scoped identifier)
        specs = _descendants(node, "import_spec")
        if specs:
            return [_text(s.child_by_field_name("path")).strip('"`') for s in specs], []
        return [_text(node).removeprefix("import").removesuffix(";").replace("static ", "").strip()], []
    if kind == "mod_item":  # Rust `mod parser;` pulls in parser.rs
        return [_text(node.child_by_field_name("name"))], []
    argument = node.child_by_field_name("argument")
    if argument is not None:  # Rust `use a::b::{c, d}`
        return [_text(argument)], re.findall(r"\w+", _text(argument.child_by_field_name("list")))
    return [_text(node)], []


def _descendants(node: tree_sitter.Node, node_type: str) -> list[tree_sitter.Node]:
    found: list[tree_sitter.Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == node_type:
            found.append(current)
        stack.extend(reversed(current.named_children))
    return found


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
