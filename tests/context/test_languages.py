"""Language detection, parsing and per-language definition extraction."""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter

from dcode.context.definitions import clean_doc, definition_nodes, doc_of, signature_of
from dcode.context.identifiers import identifier_nodes, identifier_role, import_modules, import_nodes
from dcode.context.languages import PLAIN_TEXT, _PARSERS, detect_language, get_language, grammar_names, parse
from dcode.context.syntax import QUERIES, query_captures, query_source, syntax_for
from dcode.errors import InputError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.py", "python"), ("a.pyi", "python"), ("a.js", "javascript"), ("a.mjs", "javascript"),
        ("a.jsx", "javascript"), ("a.ts", "typescript"), ("a.tsx", "tsx"), ("a.rs", "rust"), ("a.go", "go"),
        ("A.java", "java"), ("a.c", "c"), ("a.h", "c"), ("a.cpp", "cpp"), ("a.hpp", "cpp"), ("a.CC", "cpp"),
    ],
)  # fmt: skip
def test_detects_grammar_languages_by_extension(name: str, expected: str) -> None:
    lang = detect_language(Path(name))
    assert lang.name == expected
    assert lang.ts_language is not None


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        ("#!/usr/bin/env python3", "python"),
        ("#!/usr/bin/python3.11 -u", "python"),
        ("#!/usr/bin/env -S node --no-warnings", "javascript"),
        ("#!/bin/bash", "shell"),
        ("#!/usr/bin/env deno", "typescript"),
    ],
)
def test_detects_language_by_shebang(first_line: str, expected: str) -> None:
    assert detect_language(Path("tool"), first_line + "\nbody\n").name == expected


def test_override_wins_and_accepts_aliases() -> None:
    assert detect_language(Path("a.txt"), "x", override="py").name == "python"
    assert detect_language(Path("a.py"), "x", override="c++").name == "cpp"
    with pytest.raises(InputError, match="unknown language 'cobol'"):
        detect_language(Path("a.py"), override="cobol")


def test_header_with_cpp_constructs_is_cpp() -> None:
    assert detect_language(Path("x.h"), "int f(void);\n").name == "c"
    assert detect_language(Path("x.h"), "namespace a {\nclass B {};\n}\n").name == "cpp"


def test_unknown_language_falls_back_to_plain_text() -> None:
    lang = detect_language(Path("notes.weird"), "hello")
    assert lang.name == PLAIN_TEXT
    assert lang.ts_language is None
    assert "#" in lang.comment_prefixes and "--" in lang.comment_prefixes
    assert parse("hello", lang) is None


def test_grammar_known_comments_without_grammar() -> None:
    lang = detect_language(Path("q.sql"))
    assert (lang.name, lang.ts_language, lang.line_comments) == ("sql", None, ("--",))


def test_languages_and_parsers_are_loaded_once() -> None:
    assert get_language("python") is get_language("py")
    assert detect_language(Path("a.py")) is get_language("python")
    first = parse("x = 1\n", get_language("python"))
    parser = _PARSERS["python"]
    second = parse("y = 2\n", detect_language(Path("b.py")))
    assert first is not None and second is not None
    assert _PARSERS["python"] is parser  # one cached Parser per language


SAMPLES = {
    "python": (
        'import os\n\nclass A:\n    """Doc A."""\n    @property\n    def m(self) -> int:\n        return 1\n\n'
        "def outer():\n    def inner():\n        pass\n",
        {"A": "class", "A.m": "method", "outer": "function", "outer.inner": "function"},
    ),
    "javascript": (
        "/** Add. */\nexport function add(a, b) { return a + b; }\nclass K { m() {} }\nconst f = (x) => x;\n",
        {"add": "function", "K": "class", "K.m": "method", "f": "function"},
    ),
    "typescript": (
        "interface I { m(): void; }\ntype T = string;\nenum E { A }\nexport class C { run(): number { return 1; } }\n",
        {"I": "interface", "I.m": "method", "T": "type", "E": "enum", "C": "class", "C.run": "method"},
    ),
    "tsx": ("export function View() { return <div/>; }\n", {"View": "function"}),
    "rust": (
        "/// Doc S.\npub struct S { x: i32 }\nimpl Tr for S { fn m(&self) -> i32 { 1 } }\n"
        "trait Tr { fn m(&self) -> i32; }\nmod inner { pub fn g() {} }\n",
        {"S": "struct", "S.m": "method", "Tr": "trait", "Tr.m": "method", "inner": "module", "inner.g": "function"},
    ),
    "go": (
        "package p\n// T doc.\ntype T struct { X int }\ntype I interface { M() }\nfunc (t *T) M() int { return 1 }\n"
        "func F() {}\n",
        {"T": "struct", "I": "interface", "T.M": "method", "F": "function"},
    ),
    "java": (
        "class S { /** m doc */ int m(int x) { return x; } S() {} interface J { void f(); } }\n",
        {"S": "class", "S.m": "method", "S.S": "constructor", "S.J": "interface", "S.J.f": "method"},
    ),
    "c": (
        "struct P { int a; };\ntypedef struct Q { int b; } Q_t;\nint proto(int);\nstatic char *p(void) { return 0; }\n"
        "#define MAX(a, b) ((a) > (b) ? (a) : (b))\n",
        {"P": "struct", "Q": "struct", "Q_t": "type", "proto": "function", "p": "function", "MAX": "macro"},
    ),
    "cpp": (
        "namespace ns {\nclass C {\n public:\n  int m(int x) const;\n  int inl() { return 1; }\n};\n"
        "template <typename T> T tf(T x) { return x; }\n}\nint ns::C::m(int x) const { return x; }\n",
        {"ns": "namespace", "ns.C": "class", "ns.C.m": "method", "ns.C.inl": "method", "ns.tf": "function"},
    ),
}


@pytest.mark.parametrize("lang_name", sorted(SAMPLES))
def test_definitions_per_language(lang_name: str) -> None:
    source, expected = SAMPLES[lang_name]
    lang = get_language(lang_name)
    tree = parse(source, lang)
    assert tree is not None
    found = {(d.qualname, d.kind) for d in definition_nodes(tree, lang)}
    for qualname, kind in expected.items():
        assert (qualname, kind) in found, (qualname, sorted(found))


def test_signatures_and_docs() -> None:
    source = SAMPLES["rust"][0].encode()
    lang = get_language("rust")
    tree = parse(source, lang)
    assert tree is not None
    syntax = syntax_for(lang)
    assert syntax is not None
    by_name = {(d.qualname, d.kind): d for d in definition_nodes(tree, lang)}
    assert signature_of(by_name["S", "impl"], source) == "impl Tr for S"
    by_name = {d.qualname: d for d in definition_nodes(tree, lang) if d.kind != "impl"}
    assert signature_of(by_name["S.m"], source) == "fn m(&self) -> i32"
    assert signature_of(by_name["Tr.m"], source) == "fn m(&self) -> i32"  # no body: `;` dropped
    assert doc_of(by_name["S"], syntax, source) == "Doc S."

    py = SAMPLES["python"][0].encode()
    plang = get_language("python")
    ptree = parse(py, plang)
    assert ptree is not None
    pdefs = {d.qualname: d for d in definition_nodes(ptree, plang)}
    assert signature_of(pdefs["A.m"], py) == "@property\n    def m(self) -> int:"
    assert doc_of(pdefs["A"], syntax_for(plang), py) == "Doc A."  # type: ignore[arg-type]


def test_clean_doc_takes_first_paragraph() -> None:
    assert clean_doc('"""Summary line.\n\n    Details here.\n    """') == "Summary line."
    assert clean_doc("/**\n * Javadoc text\n * more\n */") == "Javadoc text more"
    assert clean_doc("/// Rust doc\n/// continues") == "Rust doc continues"


def test_identifier_roles() -> None:
    lang = get_language("python")
    source = b"def f(a):\n    obj, end = g(a)\n    return obj.end + h(k=1)\n"
    tree = parse(source, lang)
    assert tree is not None
    roles = [(n.text.decode(), identifier_role(n)) for n in identifier_nodes(tree, lang, 0, len(source))]
    assert ("a", "bind") in roles and ("end", "bind") in roles and ("end", "attr") in roles
    assert ("g", "use") in roles and ("h", "use") in roles and ("k", "bind") in roles


def test_imports_per_language() -> None:
    cases = {
        "python": (
            "from pkg.util import helper, other as o\nimport os.path\n",
            [(["pkg.util"], ["helper", "other"]), (["os.path"], [])],
        ),
        "javascript": ("import { a, b as c } from './util.js';\n", [(["./util.js"], ["a", "b"])]),
        "rust": (
            "use crate::parser::{parse, Header};\nmod parser;\n",
            [(["crate::parser::{parse, Header}"], ["parse", "Header"]), (["parser"], [])],
        ),
        "go": ('package m\nimport (\n\t"fmt"\n\tstr "strings"\n)\n', [(["fmt", "strings"], [])]),
        "java": ("import java.util.List;\nclass A {}\n", [(["java.util.List"], [])]),
        "c": ('#include "util.h"\n#include <stdio.h>\n', [(["util.h"], []), (["stdio.h"], [])]),
    }  # fmt: skip
    for name, (source, expected) in cases.items():
        lang = get_language(name)
        tree = parse(source, lang)
        assert tree is not None
        assert [import_modules(n) for n in import_nodes(tree, lang)] == expected, name


def test_every_grammar_has_a_folder_of_queries_that_compile_against_it() -> None:
    for name in grammar_names():
        ts_language = get_language(name).ts_language
        folder = QUERIES / name
        assert sorted(p.name for p in folder.glob("*.scm") if p.name != "docstrings.scm") == [
            "definitions.scm", "identifiers.scm", "imports.scm", "statements.scm", "stubs.scm"
        ], name
        for path in folder.glob("*.scm"):
            tree_sitter.Query(ts_language, path.read_text(encoding="utf-8"))  # raises on an unknown node type
            tree_sitter.Query(ts_language, query_source(name, path.name))  # and with what it inherits
            assert query_captures(name, path.name) or path.name == "docstrings.scm", f"{name}/{path.name} captures nothing"


@pytest.mark.parametrize(
    ("lang_name", "source", "returning"),
    [
        ("javascript", "function f() {}\nclass K { m() {} }\n", {"f", "m"}),
        ("typescript", "function f() {}\nfunction g(): void {}\nfunction h(): Promise<void> {}\n"
                       "function i(): never {}\nfunction j(): number {}\n", {"f", "j"}),
        ("tsx", "function f(): void {}\nfunction g(): string {}\n", {"g"}),
        ("rust", "fn f() {}\nfn g() -> () {}\nfn h() -> i32 { fn i() -> u8 {} }\n", {"h", "i"}),
        ("go", "package p\nfunc f() {}\nfunc g() int {}\nfunc (t T) m() (int, error) {}\n", {"g", "m"}),
        ("java", "class A { void f() {} int g() {} }\n", {"g"}),
        ("c", "void f(void) {}\nint g(void) {}\nvoid *h(void) {}\n", {"g", "h"}),
        ("cpp", "void f() {}\nint &g() {}\nauto h() {}\n", {"g", "h"}),
    ],
)  # fmt: skip
def test_stub_queries_say_which_functions_declare_a_result(lang_name: str, source: str, returning: set[str]) -> None:
    lang = get_language(lang_name)
    syntax = syntax_for(lang)
    tree = parse(source, lang)
    assert syntax is not None and tree is not None
    functions = [d for d in definition_nodes(tree, lang) if d.body is not None and d.kind != "class"]
    assert {d.name for d in functions if syntax.declares_result(d.node)} == returning
