"""Reviewing a proposal from the command line and the shell: the review prompt, refining chosen
lines, accepting some hunks, editing before accepting, and what is said around it. Scripted
models write known text, so every assertion is about dcode, not about model quality."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console
from typer.testing import CliRunner

from dcode.cli.app import app
from dcode.shell import Shell

LONG = "".join(f"x{i} = {i}\n" for i in range(1, 15))
# The model's text for lines 2-12 of LONG: lines 2 and 12 change, far enough apart for two hunks.
LINES_2_12 = LONG.splitlines(keepends=True)[1:12]
NEW_2_12 = "".join(["x2 = 20\n", *LINES_2_12[1:-1], "x12 = 120\n"])
ONLY_HUNK_1 = LONG.replace("x2 = 2\n", "x2 = 20\n")
ONLY_HUNK_2 = LONG.replace("x12 = 12\n", "x12 = 120\n")

STUB = 'def mean(values):\n    """Mean."""\n    # dcode: fill\n\n\ndef keep():\n    pass\n'
BODY = "    return sum(values) / len(values)"  # one line, no newline of its own
PROMPT = "[a]ccept, accept [h]unks, [e]dit, [r]eject, re[f]ine, refine [l]ines, [k]eep pending [a/h/e/r/f/l/k] (k):"


@pytest.fixture
def repo(tmp_path, monkeypatch, cache_home) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "calc.py").write_text(LONG, encoding="utf-8")
    (root / "stats.py").write_text(STUB, encoding="utf-8")
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for var in ("DCODE_MODEL", "VISUAL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def use(monkeypatch, emitting):
    """Make the commands load a model that writes `text`."""

    def make(text: str):
        model = emitting(text)
        monkeypatch.setattr("dcode.cli.session.load", lambda settings: model)
        return model

    return make


@pytest.fixture
def terminal(monkeypatch):
    """The commands believe they run on a terminal (they review instead of keeping it pending)."""
    monkeypatch.setattr("dcode.cli.session.interactive", lambda: True)


@pytest.fixture
def editor(tmp_path, monkeypatch) -> None:
    """$EDITOR is a script that changes `= 20` into `= 21` in the file it is given."""
    script = tmp_path / "edit.py"
    script.write_text("import pathlib, sys\np = pathlib.Path(sys.argv[1])\n"
                      "p.write_text(p.read_text().replace('= 20', '= 21'))\n", encoding="utf-8")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def pending(root: Path) -> dict:
    return json.loads((root / ".git" / "dcode" / "pending.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# The one-shot review prompt and refining lines
# --------------------------------------------------------------------------------------------


def test_the_review_prompt_shows_its_keys(repo, use, terminal):
    use(BODY)
    result = invoke("fill", "stats.py", input="k\n")
    assert result.exit_code == 0, result.output
    assert PROMPT in result.stderr  # Rich took `[a]` for markup and printed "ccept, eject, ..."
    assert "kept pending" in result.stderr


def test_refine_lines_are_the_files_line_numbers(repo, use):
    use(BODY)
    data = json.loads(invoke("fill", "stats.py", "--json").stdout)
    assert data["uncertain_lines"] == [] and data["lines"] == 1  # one line, though it has no newline
    result = invoke("refine", "--lines", "3", "--json")  # line 3 of stats.py, where the fill is
    assert result.exit_code == 0, result.output
    assert pending(repo)["passes"] == 2
    result = invoke("refine", "--lines", "1-2")
    assert result.exit_code == 2
    assert "dcode: error: lines 1-2 are outside the proposal: it covers line 3 of stats.py" in result.stderr


def test_a_bad_range_at_the_lines_prompt_asks_again(repo, use, terminal):
    use(BODY)
    result = invoke("fill", "stats.py", input="l\n9\n3\nk\n")
    assert result.exit_code == 0, result.output
    assert "lines 9-9 are outside the proposal: it covers line 3 of stats.py" in result.stderr
    assert result.stderr.count(PROMPT) == 2  # asked again after the refinement
    assert pending(repo)["passes"] == 2


# --------------------------------------------------------------------------------------------
# Accepting: warnings, hints, paths, figures
# --------------------------------------------------------------------------------------------


def test_accepting_a_proposal_that_does_not_parse_warns(repo, use):
    use("    return (values\n")
    result = invoke("fill", "stats.py", "--yes")
    assert result.exit_code == 4 and (repo / "stats.py").read_text(encoding="utf-8") == STUB  # --yes refuses
    result = invoke("accept")
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: stats.py does not parse after this change (`dcode undo` restores it)"]
    assert "return (values" in (repo / "stats.py").read_text(encoding="utf-8")


def test_a_stale_proposal_says_what_works(repo, use):
    use(BODY)
    assert invoke("fill", "stats.py", "--diff").exit_code == 0
    (repo / "stats.py").write_text(STUB + "# edited meanwhile\n", encoding="utf-8")
    result = invoke("accept")
    assert result.exit_code == 2
    assert "run the command again" not in result.stderr  # accepting again fails again
    assert "stats.py: changed since dcode read it" in result.stderr and "`dcode reject`" in result.stderr


def test_accept_refuses_a_read_only_file(repo, use):
    use(BODY)
    assert invoke("fill", "stats.py", "--diff").exit_code == 0
    (repo / "stats.py").chmod(0o444)
    result = invoke("accept")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"dcode: error: {repo / 'stats.py'}: read-only; not writing it (make it writable first, e.g. chmod u+w)"]
    assert (repo / "stats.py").read_text(encoding="utf-8") == STUB


def test_messages_name_files_as_the_diff_does_and_count_the_texts_tokens(repo, use):
    model = use(BODY + "\n")
    result = invoke("fill", "stats.py", "--yes")
    assert result.exit_code == 0, result.output
    tokens = len(model.tokenizer.encode(BODY + "\n"))
    assert f"stats.py: {tokens} tokens in 1 passes" in result.stderr  # not the hole's pad slots
    assert "applied to stats.py" in result.stderr
    result = invoke("undo")
    assert "restored stats.py (undid: fill stats.py)" in result.stderr and str(repo) not in result.stderr


def test_hints_lead_to_commands_that_work(repo, use, monkeypatch):
    use(BODY + "\n")
    monkeypatch.setenv("DCODE_LOW_CONFIDENCE", "0.999")  # every token is uncertain
    result = invoke("demo")
    assert result.exit_code == 0 and "uncertain tokens on line(s)" in result.stderr
    assert "dcode refine" not in result.stderr  # the demo leaves nothing pending to refine
    result = invoke("fill", "stats.py", "--yes")
    assert "uncertain tokens on line(s)" in result.stderr and "dcode refine" not in result.stderr  # applied
    invoke("undo")
    result = invoke("fill", "stats.py")
    assert "`dcode refine` re-masks them" in result.stderr  # pending: refine works


# --------------------------------------------------------------------------------------------
# Per-hunk review and edit-before-accept
# --------------------------------------------------------------------------------------------


def test_accept_hunks_applies_only_those_and_undo_restores_exactly(repo, use):
    use(NEW_2_12)
    result = invoke("fill", "calc.py:2-12")
    assert "@@ -1,5 +1,5 @@ hunk 1\n" in result.stdout and " hunk 2\n" in result.stdout
    assert "pending: `dcode accept` applies it (`--hunks 1,3` only those)" in result.stderr
    data = json.loads(invoke("fill", "calc.py:2-12", "--json").stdout)
    assert data["hunks"] == 2 and "@@ -9,6 +9,6 @@ hunk 2\n" in data["diff"]
    result = invoke("accept", "--hunks", "3")
    assert result.exit_code == 2 and "there is no hunk 3: the change has 2" in result.stderr
    result = invoke("accept", "--hunks", "2")
    assert result.exit_code == 0, result.output
    assert (repo / "calc.py").read_text(encoding="utf-8") == ONLY_HUNK_2
    assert "applied hunk 2 to calc.py" in result.stderr
    assert invoke("undo").exit_code == 0
    assert (repo / "calc.py").read_text(encoding="utf-8") == LONG


def test_the_review_accepts_chosen_hunks_and_asks_again_for_a_wrong_one(repo, use, terminal):
    use(NEW_2_12)
    result = invoke("fill", "calc.py:2-12", input="h\n5\n1\n")
    assert result.exit_code == 0, result.output
    assert "there is no hunk 5" in result.stderr
    assert (repo / "calc.py").read_text(encoding="utf-8") == ONLY_HUNK_1


def test_edit_before_accept(repo, use, terminal, editor):
    use(NEW_2_12)
    result = invoke("fill", "calc.py:2-12", input="e\na\n")
    assert result.exit_code == 0, result.output
    assert "+x2 = 21" in result.stdout  # the diff is shown again after the edit
    assert (repo / "calc.py").read_text(encoding="utf-8") == ONLY_HUNK_2.replace("x2 = 2\n", "x2 = 21\n")


def test_accept_edit_checks_the_edited_text(repo, use, tmp_path, monkeypatch):
    use(BODY + "\n")
    assert invoke("fill", "stats.py", "--diff").exit_code == 0
    script = tmp_path / "break.py"
    script.write_text("import pathlib, sys\npathlib.Path(sys.argv[1]).write_text('    return (\\n')\n", encoding="utf-8")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {script}")
    result = invoke("accept", "--edit")
    assert result.exit_code == 0, result.output
    assert "warning: stats.py does not parse after this change" in result.stderr
    assert (repo / "stats.py").read_text(encoding="utf-8") == STUB.replace("    # dcode: fill\n", "    return (\n")
    monkeypatch.setenv("EDITOR", "false")
    invoke("undo")
    invoke("fill", "stats.py", "--diff")
    result = invoke("accept", "--edit")
    assert result.exit_code == 2 and "the editor" in result.stderr
    assert (repo / "stats.py").read_text(encoding="utf-8") == STUB


# --------------------------------------------------------------------------------------------
# The same in the shell
# --------------------------------------------------------------------------------------------


def run_shell(keys: str) -> str:
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        Shell({"device": "cpu"}, Console(file=out, width=200), input=pipe, output=DummyOutput()).loop()
    return out.getvalue()


def test_shell_hunks_edit_lines_and_undo(repo, use, editor):
    use(NEW_2_12)
    log = run_shell("fill calc.py:2-12\rh" "7\r" "2\r" "exit\r")
    assert "hunk 2" in log and "there is no hunk 7" in log and "applied hunk 2 to calc.py" in log
    assert (repo / "calc.py").read_text(encoding="utf-8") == ONLY_HUNK_2
    log = run_shell("undo\r" "fill calc.py:2-12\rk" "accept 1\r" "exit\r")
    assert "restored calc.py" in log
    assert (repo / "calc.py").read_text(encoding="utf-8") == ONLY_HUNK_1
    log = run_shell("undo\r" "fill calc.py:2-12\re" "l" "1\r" "2\r" "k" "exit\r")
    assert "lines 1-1 are outside the proposal: it covers lines 2-12 of calc.py" in log
    assert pending(repo)["passes"] == 2  # asked again, then refined
    assert (repo / "calc.py").read_text(encoding="utf-8") == LONG
