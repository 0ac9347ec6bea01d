"""What dcode checks in a fill beyond "the file parses" (`dcode.edit.check`), how a fill ends a
file, and files in a PEP 263 encoding. The fills are written here, so every assertion is about the
checks, not about a model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dcode.edit.change import Change, FileEdit, apply_change
from dcode.edit.check import check_syntax, fill_problem, filled_span, region_error
from dcode.edit.files import content_hash, splice_fill
from dcode.edit.journal import Journal
from dcode.edit.targets import Target, read_source, resolve_target
from dcode.errors import InputError

STUB = 'def mean(values):\n    """Return the arithmetic mean of a list of numbers."""\n    # dcode: fill\n'


def hole(tmp_path: Path, source: str | bytes, spec: str = "", name: str = "m.py") -> Target:
    path = tmp_path / name
    path.write_bytes(source if isinstance(source, bytes) else source.encode("utf-8"))
    return resolve_target(f"{path}{spec}")


def problem(target: Target, fill: str) -> str | None:
    return fill_problem(target, splice_fill(target.text, target.start, target.end, fill))


# -- item 1: fills that parse and still must not pass --------------------------------------------


@pytest.mark.parametrize("fill, expected", [
    ("    #\n", "is only a comment"),
    ("    # dcode:\n", "leaves a piece of the `dcode: fill` marker ('# dcode:')"),
    ("    # dcode: fill\n", "leaves a piece of the `dcode: fill` marker ('# dcode: fill')"),
    ("    # TODO: compute it\n", "is only a comment"),
])  # fmt: skip
def test_a_marker_replaced_by_a_comment_or_a_piece_of_itself_is_not_verified(tmp_path, fill, expected):
    target = hole(tmp_path, STUB)
    assert target.kind == "marker"
    new = splice_fill(target.text, target.start, target.end, fill)
    assert check_syntax(new, target.language).errors == 0  # it parses: that alone let it through
    assert problem(target, fill) == expected


def test_a_piece_of_a_marker_is_caught_in_any_comment_syntax(tmp_path):
    target = hole(tmp_path, "package main\n\nfunc f() int {\n\t// dcode: fill\n}\n", name="f.go")
    assert problem(target, "\t// dcode\n\treturn 1\n") == "leaves a piece of the `dcode: fill` marker ('// dcode')"
    assert problem(target, "\treturn 1 // done\n") is None


def test_comments_may_replace_comment_lines_the_user_chose(tmp_path):
    source = "x = 1\n# old note\ny = 2\n"
    assert problem(hole(tmp_path, source, ":2"), "# new note\n") is None  # a comment line rewritten
    assert problem(hole(tmp_path, source, ":1"), "# x = 1\n") == "is only a comment"  # code asked for


@pytest.mark.parametrize("source, fill", [
    (STUB, "    return\n"),
    (STUB, "    pass\n"),
    (STUB, "    def helper():\n        return 1\n    helper()\n"),  # a nested function's result is not its
    ("def count(items) -> int:\n    # dcode: fill\n", "    print(items)\n"),
])  # fmt: skip
def test_a_body_without_the_result_its_function_describes_is_not_verified(tmp_path, source, fill):
    assert problem(hole(tmp_path, source), fill).startswith("returns nothing, but ")


@pytest.mark.parametrize("source, fill", [
    (STUB, "    return sum(values) / len(values)\n"),
    (STUB, "    for value in values:\n        yield value\n"),
    ('def log(message):\n    """Write the message."""\n    # dcode: fill\n', "    print(message)\n    return\n"),
    ("def log(message) -> None:\n    # dcode: fill\n", "    return\n"),
])  # fmt: skip
def test_a_body_that_gives_what_its_function_describes_passes(tmp_path, source, fill):
    assert problem(hole(tmp_path, source), fill) is None


def test_the_message_names_why_a_result_is_expected(tmp_path):
    assert problem(hole(tmp_path, STUB), "    return\n") == (
        "returns nothing, but the docstring of mean describes a result")
    annotated = hole(tmp_path, "def count(items) -> int:\n    # dcode: fill\n")
    assert problem(annotated, "    pass\n") == "returns nothing, but count is declared to return int"


def test_a_repair_that_deletes_the_code_it_was_to_repair_is_not_verified(tmp_path):
    target = hole(tmp_path, "def total(values):\n    result = sum(values\n    return result\n")
    assert target.kind == "syntax_error" and "return result" in target.hole
    assert problem(target, "    return\n") == "deletes the code it was to repair (keeps 6 of its 46 characters)"
    assert problem(target, "    result = sum(values)\n    return result\n") is None
    # Characters count only where they survive in order: a rewrite as long as the region is no repair.
    assert problem(target, "    print(f'total of {len(values)} items')\n") is not None


@pytest.mark.parametrize("source, hint, expected", [
    # An unclosed bracket: an insertion where line 2's code ends, then line 2 itself; tree-sitter's
    # error node runs on into line 3, whose own windows follow.
    ("def double(x):\n    result = (x * 2\n    return result\n", 2,
     [("    result = (x * 2", "", "\n"), ("    ", "result = (x * 2", "\n"),
      ("    return result", "", "\n"), ("    ", "return result", "\n")]),
    # `if x = 1:`: the error node starts at `=`, so the line is also re-masked from there on.
    ("def f(x):\n    if x = 1:\n        return 2\n", 2,
     [("    if x = 1:", "", "\n"), ("    if x ", "= 1:", "\n"), ("    ", "if x = 1:", "\n")]),
])  # fmt: skip
def test_a_syntax_error_is_first_repaired_in_narrow_windows(tmp_path, source, hint, expected):
    from dcode.edit.holes import repair_windows

    target = hole(tmp_path, source)
    assert target.kind == "syntax_error" and check_syntax(source, target.language).compile_line == hint
    windows = repair_windows(target, hint)
    line = lambda w: (w.text[w.text.rfind("\n", 0, w.start) + 1 : w.start], w.hole, w.text[w.end : w.end + 1])
    assert [line(w) for w in windows] == expected
    assert all(w.kind == "syntax_error" and target.start <= w.start <= w.end <= target.end for w in windows)


# -- item 2: the filled region itself must parse --------------------------------------------------

BROKEN = "def pad(iterable):\n    return chain(iterable, \n\n\ndef other():\n    return 1\n"


def region(target: Target, fill: str) -> str | None:
    new = splice_fill(target.text, target.start, target.end, fill)
    return region_error(check_syntax(new, target.language), new, *filled_span(target, new), target.language)


def test_a_fill_in_a_file_broken_before_is_judged_where_it_is(tmp_path):
    target = hole(tmp_path, BROKEN, ":2:28")
    new = splice_fill(target.text, target.start, target.end, " else)")
    before, after = check_syntax(target.text, target.language), check_syntax(new, target.language)
    assert after.errors <= before.errors  # "no more errors than before" called this one fine
    assert region(target, " else)") == "unexpected 'else' at line 2"
    assert region(target, "repeat(None))") is None


def test_an_error_elsewhere_does_not_fail_a_good_fill(tmp_path):
    # The unclosed call on line 2 makes tree-sitter's error span the marker's lines too.
    target = hole(tmp_path, "def f(x):\n    y = foo(x\n    z = 1\n    # dcode: fill\n    return y\n")
    assert region(target, "    w = 2\n") is None
    assert region(target, "    w = (2\n") is not None


# -- item 4: no blank lines at the end of a file -------------------------------------------------


@pytest.mark.parametrize("text, start, end, fill, expected", [
    ("def f():\n    # dcode: fill\n", 9, 27, "    return 1\n\n\n", "def f():\n    return 1\n"),
    ("def f():\n    # dcode: fill\n", 9, 27, "    return 1  \n \n", "def f():\n    return 1\n"),
    ("x = foo(\n", 8, 8, "1)\n\n", "x = foo(1)\n"),  # an insertion before the file's last newline
    ("def f():\n    # dcode: fill\n\n", 9, 27, "    return 1\n\n", "def f():\n    return 1\n\n"),  # kept, not added
    ("def f():\n    # dcode: fill\nx = 1\n", 9, 27, "    return 1\n\n", "def f():\n    return 1\n\nx = 1\n"),
])  # fmt: skip
def test_a_fill_at_the_end_of_a_file_adds_no_blank_lines(text, start, end, fill, expected):
    assert splice_fill(text, start, end, fill) == expected


# -- item 15: PEP 263 encodings --------------------------------------------------------------------

LATIN1 = "# -*- coding: latin-1 -*-\nNAME = 'café'\n\n\ndef greet():\n    # dcode: fill\n"


def test_a_file_in_its_declared_encoding_is_read_written_and_undone_in_it(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    path = tmp_path / "greet.py"
    original = LATIN1.encode("latin-1")
    path.write_bytes(original)
    assert read_source(path) == LATIN1
    target = resolve_target(str(path))
    assert target.kind == "marker"
    new = splice_fill(target.text, target.start, target.end, "    return 'olé ' + NAME\n")
    apply_change(Change(tmp_path, "fill", [FileEdit(path, "greet.py", content_hash(original), new)]))
    assert path.read_bytes() == new.encode("latin-1")  # é is one byte, as Python reads it
    compile(path.read_bytes(), str(path), "exec")
    Journal(tmp_path).undo()
    assert path.read_bytes() == original


def test_text_the_declared_encoding_cannot_hold_is_not_verified(tmp_path):
    target = hole(tmp_path, LATIN1.encode("latin-1"))
    assert "'→' cannot be written in iso-8859-1" in problem(target, "    return '→'\n")
    assert problem(target, "    return 'é'\n") is None


def test_a_file_without_a_coding_line_must_be_utf8(tmp_path):
    (tmp_path / "bad.py").write_bytes(b"x = '\xe9'\n")
    with pytest.raises(InputError, match=r"bad\.py is not UTF-8 text \(invalid byte at offset 5\)"):
        read_source(tmp_path / "bad.py")
    (tmp_path / "odd.py").write_bytes(b"# coding: klingon\nx = 1\n")
    with pytest.raises(InputError, match="unknown encoding: klingon"):
        read_source(tmp_path / "odd.py")
