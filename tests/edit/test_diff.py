"""The diff dcode shows for a file without a final newline: git's `\\ No newline at end of file`
marker, so that `dcode fill --diff | git apply` gives exactly the proposed bytes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dcode.edit.change import unified_diff

MARKER = "\\ No newline at end of file\n"


def git_apply(tmp_path: Path, old: str, diff: str) -> str:
    """`old` with `diff` applied by git (outside a repository git apply is a plain patch tool)."""
    (tmp_path / "f.py").write_bytes(old.encode("utf-8"))
    done = subprocess.run(["git", "apply", "-"], cwd=tmp_path, input=diff, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr
    return (tmp_path / "f.py").read_bytes().decode("utf-8")


def test_a_line_added_after_a_last_line_without_newline():
    diff = unified_diff("f.py", "a = 1\nb = 2", "a = 1\nb = 2\nc = 3\n")
    assert diff == ("--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,3 @@\n a = 1\n"
                    f"-b = 2\n{MARKER}+b = 2\n+c = 3\n")


def test_a_new_last_line_without_newline():
    diff = unified_diff("f.py", "a = 1\nb = 2\n", "a = 1\nc = 3")
    assert diff.endswith(f"-b = 2\n+c = 3\n{MARKER}")
    assert diff.count(MARKER) == 1  # the old text ended in a newline: no marker on its side


@pytest.mark.parametrize("old, new", [
    ("a = 1\nb = 2", "a = 1\nb = 2\nc = 3\n"),
    ("a = 1\nb = 2\n", "a = 1\nc = 3"),
    ("x = 0\na = 1\nb = 2", "x = 0\na = 1\nb = 3"),
    ("\n".join(f"v{i} = {i}" for i in range(12)), "v0 = -1\n" + "\n".join(f"v{i} = {i}" for i in range(1, 12))),
], ids=["newline added", "newline dropped", "neither has one", "last line far from the change"])
def test_git_apply_gives_exactly_the_new_bytes(tmp_path, old, new):
    assert git_apply(tmp_path, old, unified_diff("f.py", old, new)) == new


def test_an_unchanged_last_line_without_newline_is_context_not_a_change():
    old = "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6"
    diff = unified_diff("f.py", old, old.replace("a = 1", "a = 0"))
    assert MARKER not in diff  # the last line is more than 3 lines from the change: not in the hunk
    diff = unified_diff("f.py", "a = 1\nb = 2", "a = 0\nb = 2")
    assert diff.endswith(f" b = 2\n{MARKER}")
