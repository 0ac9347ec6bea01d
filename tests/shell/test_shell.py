"""The interactive session, driven through prompt-toolkit's pipe input."""

from __future__ import annotations

import io
import json
import subprocess

from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from rich.console import Console

from dcode.shell import Shell, ShellCompleter

SOURCE = 'def greet(name):\n    """Say hello."""\n    # dcode: fill\n\n\nprint(greet("x"))\n'


def make_repo(tmp_path, monkeypatch, shipped_model):
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "hello.py").write_text(SOURCE)
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("DCODE_MAX_TOKENS", "32")
    monkeypatch.chdir(root)
    return root


def run_session(keys: str, shipped_model) -> str:
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        shell = Shell({"model": str(shipped_model), "device": "cpu"}, Console(file=out, width=120),
                      input=pipe, output=DummyOutput())
        shell.loop()
    return out.getvalue()


def test_fill_refine_accept_undo(tmp_path, monkeypatch, shipped_model):
    root = make_repo(tmp_path, monkeypatch, shipped_model)
    # fill -> refine (f) -> accept (a); then undo; then leave.
    log = run_session("fill hello.py\rfa" "undo\r" "exit\r", shipped_model)
    assert "-    # dcode: fill" in log  # the diff was shown
    assert "applied to hello.py" in log
    assert "restored" in log
    assert (root / "hello.py").read_text() == SOURCE  # undo restored the bytes


def test_keep_then_reject_and_errors_do_not_end_the_session(tmp_path, monkeypatch, shipped_model):
    root = make_repo(tmp_path, monkeypatch, shipped_model)
    log = run_session("fill hello.py\rk" "bogus\r" "fill nothere.py\r" "reject\r" "accept\r" "exit\r",
                      shipped_model)
    assert "kept pending" in log
    assert "unknown command 'bogus'" in log
    assert "no such file" in log
    assert "rejected" in log
    assert "no pending proposal" in log
    assert (root / "hello.py").read_text() == SOURCE


def test_completion_of_commands_and_symbols(tmp_path, monkeypatch, shipped_model):
    make_repo(tmp_path, monkeypatch, shipped_model)
    with create_pipe_input() as pipe:
        shell = Shell({"model": str(shipped_model)}, Console(file=io.StringIO()), input=pipe, output=DummyOutput())
        completer = ShellCompleter(shell)
        words = lambda text: [c.text for c in completer.get_completions(Document(text, len(text)), None)]  # noqa: E731
        assert "fill" in words("fi") and "refine" in words("re")
        assert "greet" in words("write hello.py::gr")
        assert "lo.py" in words("fill hel")  # PathCompleter completes the rest of the name


def test_words_after_the_target_are_the_instruction(tmp_path, monkeypatch, shipped_model):
    root = make_repo(tmp_path, monkeypatch, shipped_model)
    log = run_session('write hello.py::greet "say hello" politely\rk' "exit\r", shipped_model)
    assert "kept pending" in log
    pending = json.loads((root / ".git" / "dcode" / "pending.json").read_text())
    assert pending["instruction"] == "say hello politely"
    assert pending["kind"] == "marker"  # greet's body holds a marker: the hole is the marker's line


def test_the_session_runs_the_model_on_the_threads_setting(tmp_path, monkeypatch, shipped_model):
    import torch

    make_repo(tmp_path, monkeypatch, shipped_model)
    monkeypatch.setenv("DCODE_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with create_pipe_input() as pipe:
            Shell({"model": str(shipped_model), "device": "cpu"}, Console(file=io.StringIO()), input=pipe,
                  output=DummyOutput()).ensure_model()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
