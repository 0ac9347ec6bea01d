"""The languages dcode knows: name, file extensions, interpreters, comment syntax and grammar;
detecting a file's language, and parsing it with tree-sitter.

Grammars come from the per-language wheels (tree-sitter-python, ...), loaded lazily and once.
What a grammar's nodes mean (definitions, statements, imports, identifiers, stubs) is data: the
query files under `queries/<language>/`, read by `dcode.context.syntax`. Adding a language is a
grammar wheel, an entry in `_SPECS` below and a folder of queries.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
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
