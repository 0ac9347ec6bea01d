"""The session's commands beyond fill/accept/undo: help, context, info, refine with a line range
and passes, accepting chosen hunks, and the mistakes a user types, which never end the session."""

from __future__ import annotations

import json

from dcode.shell.completion import COMMANDS
from test_shell import SOURCE, make_repo, run_session


def pending(root) -> dict:
    return json.loads((root / ".git" / "dcode" / "pending.json").read_text())


def test_help_lists_every_command_and_mistakes_are_one_line_each(tmp_path, monkeypatch, shipped_model):
    root = make_repo(tmp_path, monkeypatch, shipped_model)
    log = run_session('help\r' 'fill "hello.py\r' 'fill\r' 'context\r' 'refine\r' 'exit\r', shipped_model)
    lines = log.splitlines()
    assert [line.strip() for line in lines[1 : 1 + len(COMMANDS)]] == list(COMMANDS.values())
    errors = lines[1 + len(COMMANDS):]
    assert errors[:3] == [
        "error: cannot parse the line: No closing quotation",
        f"error: usage: {COMMANDS['fill']}",
        f"error: usage: {COMMANDS['context']}",
    ]
    assert len(errors) == 4 and errors[3].startswith("error: no pending proposal")  # refine with nothing to refine
    assert (root / "hello.py").read_text() == SOURCE


def test_context_and_info_describe_what_the_model_sees(tmp_path, monkeypatch, shipped_model):
    make_repo(tmp_path, monkeypatch, shipped_model)
    log = run_session("context hello.py\r" "info\r" "exit\r", shipped_model)
    assert "target: hello.py:3 (marker in greet)" in log
    assert "local prefix: 2 lines" in log and "local suffix: 3 lines" in log
    assert f"dcode-mini: 4.0M parameters, cpu, float32, {shipped_model}" in log


def test_refine_a_line_range_for_several_passes_then_accept_chosen_hunks(tmp_path, monkeypatch, shipped_model):
    root = make_repo(tmp_path, monkeypatch, shipped_model)
    log = run_session("fill hello.py\rk" "refine 9-9\r" "refine 3-3 --passes 2\rk" "exit\r", shipped_model)
    assert "error: lines 9-9 are outside the proposal: it covers line 3 of hello.py" in log
    assert pending(root)["passes"] == 3  # the fill, then two refinements of line 3
    log = run_session("accept 2\r" "accept 1\r" "exit\r", shipped_model)
    assert "error: there is no hunk 2: the change has 1 (numbered as the diff shows them)" in log
    assert "applied hunk 1 to hello.py" in log
    assert "# dcode: fill" not in (root / "hello.py").read_text()
    assert not (root / ".git" / "dcode" / "pending.json").exists()
