"""Target specs, hole markers, stub bodies and syntax-error regions resolve to the right ranges."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcode.context.languages import detect_language, get_language
from dcode.context.target import TextOffsets
from dcode.edit.targets import Target, find_holes, read_source, resolve_target, scope_exit
from dcode.errors import InputError
from tests.conftest import REPOS



@pytest.fixture
def repos(tmp_path: Path) -> Path:
    """A private copy of the sample repositories (tests may edit files)."""
    shutil.copytree(REPOS, tmp_path / "repos")
    return tmp_path / "repos"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def assert_consistent(target: Target) -> None:
    """Character and byte offsets describe the same hole."""
    data = target.text.encode("utf-8")
    assert data[: target.start_byte].decode("utf-8") == target.text[: target.start]
    assert data[target.start_byte : target.end_byte].decode("utf-8") == target.hole


# -- explicit forms ---------------------------------------------------------------------------

PY = '''import os


class Parser:
    """Parse things."""

    def parse(self, data):
        """Parse data."""
        head = data[:4]
        return head

    def size(self):
        return 4


def helper(x):
    return x + 1
'''


def test_line_target_is_the_whole_line(tmp_path: Path) -> None:
    write(tmp_path, "m.py", PY)
    target = resolve_target("m.py:9", tmp_path)
    assert (target.kind, target.hole, target.line_range) == ("line", "        head = data[:4]\n", (9, 9))
    assert target.indent == "        "
    assert [s.qualname for s in target.scopes] == ["Parser", "Parser.parse"]
    assert_consistent(target)


def test_range_target_covers_whole_lines_inclusive(tmp_path: Path) -> None:
    write(tmp_path, "m.py", PY)
    target = resolve_target("m.py:9-10", tmp_path)
    assert target.kind == "range"
    assert target.hole == "        head = data[:4]\n        return head\n"
    assert target.line_range == (9, 10)


def test_position_target_is_an_insertion_point(tmp_path: Path) -> None:
    write(tmp_path, "m.py", PY)
    target = resolve_target("m.py:9:16", tmp_path)
    assert target.kind == "position"
    assert target.start == target.end
    assert target.text[target.start :].startswith("data[:4]")
    assert [s.name for s in target.scopes] == ["Parser", "parse"]


def test_symbol_target_is_the_body_after_the_docstring(tmp_path: Path) -> None:
    write(tmp_path, "m.py", PY)
    target = resolve_target("m.py::Parser.parse", tmp_path)
    assert target.kind == "symbol"
    assert target.hole == "        head = data[:4]\n        return head\n"
    assert target.symbol == "Parser.parse"
    # The function itself is a scope: its signature and docstring are context.
    assert target.scopes[-1].signature == "def parse(self, data):"
    assert target.scopes[-1].doc == "Parse data."
    assert resolve_target("m.py::helper", tmp_path).hole == "    return x + 1\n"
    # A method name alone works when it is unique in the file.
    assert resolve_target("m.py::size", tmp_path).hole == "        return 4\n"


def test_symbol_with_only_a_docstring_is_an_insertion_after_it(tmp_path: Path) -> None:
    write(tmp_path, "d.py", 'def todo():\n    """Write me."""\n\nx = 1\n')
    target = resolve_target("d.py::todo", tmp_path)
    assert target.start == target.end == len('def todo():\n    """Write me."""\n')
    assert target.indent == "    "


@pytest.mark.parametrize(
    ("lang", "spec", "hole", "scopes"),
    [
        ("rust", "src/lib.rs::Packet.checksum", "        todo!()\n", ["Packet", "Packet.checksum"]),
        ("rust", "src/parser.rs::parse_header", "    Header { len: bytes[0] as usize }\n", ["parse_header"]),
        ("go", "stats.go::Stats.Add", "\ts.values = append(s.values, x)\n", ["Stats.Add"]),
        ("java", "src/main/java/demo/MathUtil.java::MathUtil.square", "        return x * x;\n",
         ["MathUtil", "MathUtil.square"]),
        ("cpp", "src/shape.cpp::geo::Square::area", "return side_ * side_;", ["geo", "geo.Square.area"]),
        ("c", "src/util.c::clamp", "    if (x < lo) return lo;\n    if (x > hi) return hi;\n    return x;\n",
         ["clamp"]),
        ("javascript", "src/math.js::lerp", "a + (b - a) * t", ["lerp"]),
    ],
)  # fmt: skip
def test_symbol_targets_in_other_languages(lang: str, spec: str, hole: str, scopes: list[str]) -> None:
    target = resolve_target(spec, REPOS / lang)
    assert target.hole == hole
    assert [s.qualname for s in target.scopes] == scopes


def test_rust_type_name_prefers_the_type_over_its_impl() -> None:
    target = resolve_target("src/lib.rs::Packet", REPOS / "rust")
    assert target.hole == "    pub len: usize,\n"


def test_relative_path_without_root_uses_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "pkg/m.py", PY)
    monkeypatch.chdir(tmp_path)
    target = resolve_target("pkg/m.py:9")
    assert target.path == Path("pkg/m.py")
    assert target.hole == "        head = data[:4]\n"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("m.py:99", "has only 17 lines"),
        ("m.py:0", "line numbers start at 1"),
        ("m.py:5-2", "ends before it starts"),
        ("m.py:9:99", "line 9 of"),
        ("m.py:abc", "malformed target"),
        ("m.py::", "malformed target"),
        ("m.py::Nope", "unknown symbol 'Nope'"),
        ("missing.py:3", "no such file"),
        ("", "empty target"),
    ],
)
def test_bad_specs_raise_input_errors(tmp_path: Path, spec: str, message: str) -> None:
    write(tmp_path, "m.py", PY)
    with pytest.raises(InputError, match=message):
        resolve_target(spec, tmp_path)


def test_ambiguous_and_bodiless_symbols(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.py",
        "class A:\n    def f(self):\n        return 1\n\nclass B:\n    def f(self):\n        return 2\n",
    )
    with pytest.raises(InputError, match="ambiguous"):
        resolve_target("a.py::f", tmp_path)
    assert resolve_target("a.py::B.f", tmp_path).hole == "        return 2\n"
    with pytest.raises(InputError, match="without a body"):
        resolve_target("src/util.h::clamp", REPOS / "c")


def test_symbols_need_a_grammar(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "hello\n")
    with pytest.raises(InputError, match="no grammar"):
        resolve_target("notes.txt::hello", tmp_path)


# -- markers ----------------------------------------------------------------------------------


def test_marker_with_hint_and_scopes() -> None:
    target = resolve_target("shapes/geometry.py", REPOS / "python")
    assert target.kind == "marker"
    assert target.hole == "        # dcode: fill add up the sides with distance\n"
    assert target.hint == "add up the sides with distance"
    assert target.indent == "        "
    assert [s.qualname for s in target.scopes] == ["Polygon", "Polygon.perimeter"]


def test_marker_alone_in_a_python_body_keeps_its_function_scope(tmp_path: Path) -> None:
    # The block is empty to Python, so a naive parse puts the comment outside the function.
    write(tmp_path, "m.py", "class A:\n    def f(self):\n        # dcode: fill\n\n    def g(self):\n        pass\n")
    holes = find_holes(tmp_path / "m.py")
    marker = holes[0]
    assert marker.kind == "marker" and marker.hint is None
    assert [s.qualname for s in marker.scopes] == ["A", "A.f"]
    assert [h.kind for h in holes] == ["marker", "stub"]  # g's pass; no spurious syntax error


@pytest.mark.parametrize("docstring", ['    """Return twice x."""\n', ""])
@pytest.mark.parametrize("mode", ["fill", "write"])
def test_a_named_target_whose_body_holds_a_marker_is_the_marker_line(tmp_path: Path, docstring: str, mode: str) -> None:
    from dcode.workflow import Request, resolve

    write(tmp_path, "m.py", f"def double(x):\n{docstring}    # dcode: fill times two\n\n\ny = 1\n")
    bare = resolve_target("m.py", tmp_path)
    target = resolve(Request(str(tmp_path / "m.py::double"), mode))
    assert (target.kind, target.start, target.end, target.hint) == ("marker", bare.start, bare.end, "times two")
    assert target.hole == "    # dcode: fill times two\n" and target.symbol == "double"
    assert [s.qualname for s in target.scopes] == ["double"]


def test_marker_inside_a_call_is_not_patched_into_a_statement() -> None:
    source = "def f():\n    x = foo(\n        1,\n        # dcode: fill more args\n    )\n    return x\n"
    holes = find_holes(source, get_language("python"))
    assert [(t.kind, t.line_range, t.hint) for t in holes] == [("marker", (4, 4), "more args")]
    assert [s.qualname for s in holes[0].scopes] == ["f"]


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("a.js", "  // dcode: fill"),
        ("a.c", "    /* dcode: fill */"),
        ("a.rs", "    /// dcode: fill"),
        ("a.sql", "  -- dcode: fill"),
        ("a.txt", "# dcode: fill"),
        ("a.unknown", "-- dcode: fill"),
    ],
)
def test_marker_comment_syntaxes(tmp_path: Path, name: str, line: str) -> None:
    write(tmp_path, name, f"first\n{line}\nlast\n")
    target = resolve_target(name, tmp_path)
    assert (target.kind, target.hole, target.line_range) == ("marker", line + "\n", (2, 2))


def test_marker_text_inside_a_string_is_not_a_marker(tmp_path: Path) -> None:
    write(tmp_path, "s.py", 'TEXT = """\n# dcode: fill\n"""\n')
    assert find_holes(tmp_path / "s.py") == []


def test_marker_in_a_crlf_file_keeps_offsets_on_disk_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "w.py", b"def f():\r\n    x = 1\r\n    # dcode: fill \xc3\xa9t\xc3\xa9\r\n    return x\r\n")
    target = resolve_target("w.py", tmp_path)
    assert target.hint == "été"
    assert target.hole == "    # dcode: fill été\r\n"
    data = path.read_bytes()
    assert data[target.start_byte : target.end_byte] == "    # dcode: fill été\r\n".encode()
    assert target.start_byte == target.start  # ASCII before the hole
    assert target.end_byte == target.end + 2  # two two-byte characters inside it
    assert_consistent(target)


# -- stubs ------------------------------------------------------------------------------------

STUB_CASES = [
    ("python", "shapes/report.py", ["    raise NotImplementedError\n", "    ...\n"]),
    (
        "javascript",
        "src/app.js",
        ["  // dcode: fill interpolate between from and to\n", '  throw new Error("not implemented");\n'],
    ),
    ("javascript", "src/shapes.ts", [""]),  # area(): number {} -- describe(): void {} is not a stub
    ("rust", "src/lib.rs", ["        todo!()\n"]),
    ("go", "main.go", ['\tpanic("not implemented")\n']),
    ("java", "src/main/java/demo/Calc.java", ["        throw new UnsupportedOperationException();\n"]),
    ("c", "src/main.c", [""]),  # int scale(int x) {} -- main is not empty
    ("cpp", "src/shape.cpp", ['  throw std::logic_error("not implemented");\n']),
]  # fmt: skip


@pytest.mark.parametrize(("lang", "rel", "holes"), STUB_CASES)
def test_find_holes_in_sample_repos(lang: str, rel: str, holes: list[str]) -> None:
    found = find_holes(REPOS / lang / rel)
    assert [t.hole for t in found] == holes
    for target in found:
        assert target.scopes, target.describe()
        assert_consistent(target)


def test_empty_body_stub_is_an_insertion_inside_the_braces() -> None:
    (target,) = find_holes(REPOS / "c" / "src" / "main.c")
    assert (target.kind, target.symbol, target.line_range) == ("stub", "scale", (5, 5))
    assert target.text[target.start :].startswith("}\n")
    assert target.indent == "    "
    (ts_stub,) = find_holes(REPOS / "javascript" / "src" / "shapes.ts")
    assert ts_stub.symbol == "Circle.area"
    assert ts_stub.text[ts_stub.start - 1 : ts_stub.start + 1] == "{}"


def test_python_stub_forms(tmp_path: Path) -> None:
    source = (
        "import abc\nfrom typing import Protocol\n\n"
        "def a():\n    pass\n\n"
        'def b():\n    """Doc."""\n    ...\n\n'
        "def c():\n    raise NotImplementedError('later')\n\n"
        'def d():\n    """Only a docstring."""\n\n'
        "class Base(abc.ABC):\n    @abc.abstractmethod\n    def e(self):\n        pass\n\n"
        "class P(Protocol):\n    def f(self) -> int: ...\n\n"
        "class Err(Exception):\n    pass\n\n"
        "def g():\n    x = 1\n    pass\n"
    )
    write(tmp_path, "s.py", source)
    found = {t.symbol: t for t in find_holes(tmp_path / "s.py")}
    assert sorted(found) == ["a", "b", "c", "d"]  # abstract, Protocol, class bodies and real code are not stubs
    assert found["a"].hole == "    pass\n"
    assert found["b"].hole == "    ...\n"  # the docstring stays
    assert found["c"].hole == "    raise NotImplementedError('later')\n"
    assert found["d"].start == found["d"].end


def test_pyi_files_have_no_stubs(tmp_path: Path) -> None:
    write(tmp_path, "s.pyi", "def a() -> int: ...\n")
    assert find_holes(tmp_path / "s.pyi") == []


def test_brace_language_stub_forms(tmp_path: Path) -> None:
    write(tmp_path, "a.rs", "fn a() -> u8 { unimplemented!() }\nfn b() {}\nfn c() -> u8 {\n    // later\n}\n")
    write(tmp_path, "a.go", 'package a\nfunc A() { panic("TODO") }\nfunc B() {}\nfunc C() int {\n}\n')
    write(tmp_path, "A.java", "class A { void a() {} A() {} int b() { return 1; } }\n")
    write(tmp_path, "a.js", "class K { constructor() {} m() {} }\nconst f = () => {};\n")
    assert [t.symbol for t in find_holes(tmp_path / "a.rs")] == ["a", "c"]
    assert [t.symbol for t in find_holes(tmp_path / "a.go")] == ["A", "C"]
    assert find_holes(tmp_path / "A.java") == []
    assert [t.symbol for t in find_holes(tmp_path / "a.js")] == ["K.m"]
    # The comment in c's body stays; code goes on the next line.
    rust_c = find_holes(tmp_path / "a.rs")[1]
    assert rust_c.text[: rust_c.start].endswith("// later\n") and rust_c.indent == "    "


# -- syntax errors ----------------------------------------------------------------------------


def test_syntax_error_is_widened_to_its_statement(tmp_path: Path) -> None:
    write(tmp_path, "e.c", "int f(int x) {\n    int y = x + 1\n    return y;\n}\n")
    (target,) = find_holes(tmp_path / "e.c")
    assert target.kind == "syntax_error"
    assert target.hole == "    int y = x + 1\n"
    assert target.detail == "missing ';' at line 2"
    assert [s.name for s in target.scopes] == ["f"]


def test_syntax_errors_in_javascript_and_python(tmp_path: Path) -> None:
    write(tmp_path, "e.js", "function f(x) {\n  const y = g(x;\n  return y;\n}\n")
    (js,) = find_holes(tmp_path / "e.js")
    assert (js.kind, js.line_range) == ("syntax_error", (2, 2))
    write(
        tmp_path,
        "e.py",
        "def ok():\n    return 1\n\ndef bad(x):\n    y = [1, 2\n    return y\n\ndef fine():\n    return 3\n",
    )
    (py,) = find_holes(tmp_path / "e.py")
    assert py.kind == "syntax_error"
    first, last = py.line_range
    assert first <= 5 <= last and first >= 4 and last <= 7  # around `bad`, not `ok` or `fine`


def test_bare_path_prefers_marker_then_stub_then_syntax_error(tmp_path: Path) -> None:
    write(tmp_path, "p.py", "def a():\n    pass\n\ndef b(:\n    return 1\n\n# dcode: fill\n")
    assert resolve_target("p.py", tmp_path).kind == "marker"
    write(tmp_path, "q.py", "def b(:\n    return 1\n\ndef a():\n    pass\n")
    assert resolve_target("q.py", tmp_path).kind == "stub"
    write(tmp_path, "r.py", "def b(:\n    return 1\n")
    assert resolve_target("r.py", tmp_path).kind == "syntax_error"


def test_bare_path_with_nothing_to_fill(tmp_path: Path) -> None:
    write(tmp_path, "ok.py", "def a():\n    return 1\n")
    with pytest.raises(InputError, match=r"nothing to fill in .*ok\.py: no dcode: fill marker"):
        resolve_target("ok.py", tmp_path)


def test_find_holes_on_text_with_a_language() -> None:
    holes = find_holes("fn a() -> u8 { todo!() }\n// dcode: fill\n", get_language("rust"))
    assert [t.kind for t in holes] == ["stub", "marker"]
    assert find_holes("plain\n# dcode: fill the rest\n")[0].hint == "the rest"


# -- reading files ----------------------------------------------------------------------------


def test_read_source_errors(tmp_path: Path) -> None:
    write(tmp_path, "bin.dat", b"\x7fELF\x00\x01")
    write(tmp_path, "latin1.py", b"x = '\xe9'\n")
    (tmp_path / "dir").mkdir()
    for name, message in [("missing.py", "no such file"), ("dir", "is a directory"), ("bin.dat", "binary file"),
                          ("latin1.py", "not UTF-8 text")]:  # fmt: skip
        with pytest.raises(InputError, match=message) as info:
            read_source(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)
    with pytest.raises(InputError, match="binary file"):
        resolve_target("bin.dat:1", tmp_path)


def test_files_over_the_size_limit_are_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dcode.edit import targets

    line = b"x = 1\n"
    path = write(tmp_path, "big.py", line * (targets.MAX_FILE_BYTES // len(line) + 1))
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("a file over the limit was read"))
    with pytest.raises(InputError, match=r"^.*big\.py is 2\.0 MiB: larger than dcode's limit of 2 MiB") as info:
        resolve_target("big.py", tmp_path)
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    path.write_bytes(line * (targets.MAX_FILE_BYTES // len(line)))  # at the limit: fine
    assert resolve_target("big.py:1", tmp_path).hole == "x = 1\n"


def test_read_source_keeps_crlf(tmp_path: Path) -> None:
    write(tmp_path, "w.txt", b"a\r\nb\r\n")
    assert read_source(tmp_path / "w.txt") == "a\r\nb\r\n"
    target = resolve_target("w.txt:2", tmp_path)
    assert target.hole == "b\r\n" and target.start_byte == 3


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(alphabet=st.sampled_from("ab é€\t𝄞x"), max_size=12), min_size=1, max_size=12),
    data=st.data(),
)
def test_line_ranges_and_offsets_agree(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], data: st.DataObject
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    text = "".join(line + "\n" for line in lines)
    write(tmp, "f.txt", text)
    first = data.draw(st.integers(1, len(lines)))
    last = data.draw(st.integers(first, len(lines)))
    target = resolve_target(f"f.txt:{first}-{last}", tmp)
    assert target.hole == "".join(line + "\n" for line in lines[first - 1 : last])
    assert target.line_range == (first, last)
    assert_consistent(target)
    offsets = TextOffsets(text)
    for char in range(len(text) + 1):
        assert offsets.to_char(offsets.to_byte(char)) == char


# -- fills that leave their definition ------------------------------------------------------

PY_STUB = 'def mean(values):\n    """Mean."""\n    # dcode: fill\n\n\ndef keep():\n    pass\n'
C_STUB = "int add(int a, int b) {\n    // dcode: fill\n}\n\nint main(void) { return 0; }\n"


def marker_in(text: str, name: str) -> Target:
    hole = next(h for h in find_holes(text, detect_language(Path(name), text)) if h.kind == "marker")
    return Target(**{**hole.__dict__, "path": Path(name)})


@pytest.mark.parametrize("source, name, fill, kept", [
    (PY_STUB, "m.py", "    return sum(values) / len(values)\n", None),
    (PY_STUB, "m.py", "    total = sum(values)\n    return total / len(values)\n\n", None),  # trailing blank lines stay
    (PY_STUB, "m.py", "    return 1\n\n\ndef other():\n    return 2\n", "    return 1\n"),
    (PY_STUB, "m.py", "x = 1\n", ""),  # dedented at once: nothing of it is in `mean`
    (C_STUB, "m.c", "    return a + b;\n", None),
    (C_STUB, "m.c", "    return a + b;\n}\n\nint sub(int a, int b) {\n    return a - b;\n", "    return a + b;\n"),
    (C_STUB, "m.c", "    return a + b; }\nint z;\n", "    return a + b; "),
])
def test_a_fill_is_cut_where_it_leaves_its_definition(source, name, fill, kept):
    target = marker_in(source, name)
    cut = scope_exit(target, fill)
    assert (None if cut is None else fill[:cut]) == kept


def test_holes_outside_definitions_are_never_cut():
    target = marker_in("import os\n# dcode: fill\n", "m.py")
    assert scope_exit(target, "x = 1\n\ndef f():\n    pass\n") is None
