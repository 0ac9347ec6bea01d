"""What a person at a terminal meets besides proposals: shell completion, Ctrl-C, `dcode models`
and `dcode info`, and the threads the model runs on."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import sys
import termios
import time
from pathlib import Path

import pyte
import pytest
import torch

from dcode.cli import session
from dcode.settings import Settings
from tests.cli.conftest import invoke
from tests.conftest import REPO_ROOT

# -- shell completion ----------------------------------------------------------------------------


@pytest.mark.parametrize(("shell", "line"), [
    ("bash", "complete -o default -F _dcode_completion dcode"),
    ("zsh", "compdef _dcode_completion dcode"),
    ("fish", "complete --command dcode"),
])
def test_show_completion_prints_the_shells_script(monkeypatch, shell, line):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # name the shell, as the README's commands do
    result = invoke("--show-completion", shell)
    assert result.exit_code == 0 and line in result.stdout


def test_completion_completes_commands_and_subcommands(monkeypatch):
    from typer.testing import CliRunner

    from dcode.cli.app import app

    def complete(words: str) -> list[str]:
        env = {"_DCODE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        return CliRunner().invoke(app, [], prog_name="dcode", env=env).stdout.split()

    assert complete("dcode fi") == ["fill"]
    assert complete("dcode hook r") == ["run"]
    assert "--install-completion" in invoke("--help").stdout


# -- Ctrl-C ----------------------------------------------------------------------------------------


def run_in_terminal(argv: list[str], cwd: Path, env: dict[str, str], interrupt_on: bytes,
                    timeout: float = 180.0) -> tuple[int, bytes, int]:
    """Run `argv` on a new 80x24 pseudo-terminal; once `interrupt_on` has been printed, type
    Ctrl-C (the terminal echoes it and signals the command, as a person's Ctrl-C does). Returns
    (exit status, everything the terminal received, its local modes when the command ended)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once
        os.chdir(cwd)
        os.execve(argv[0], argv, env)
    termios.tcsetwinsize(fd, (24, 80))
    out, typed, deadline = b"", False, time.monotonic() + timeout
    modes = termios.tcgetattr(fd)[3]
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        if not typed and interrupt_on in out:
            os.write(fd, b"\x03")
            typed = True
        if typed:
            modes = termios.tcgetattr(fd)[3]  # as the command leaves them
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out, modes


def test_ctrl_c_during_write_says_so_in_one_line_and_leaves_the_terminal_clean(repo, shipped_model):
    before = (repo / "geo.py").read_bytes()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR" and not k.startswith("DCODE_")}
    env.update(TERM="xterm-256color", DCODE_MODEL=str(shipped_model), COLUMNS="80", LINES="24",
               PYTHONPATH=str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    # One token per pass and the whole canvas each pass: the generation outlasts the interrupt.
    argv = [sys.executable, "-m", "dcode", "write", "geo.py::area", "--tokens-per-step", "1", "--no-cache",
            "--max-tokens", "256"]
    status, out, modes = run_in_terminal(argv, repo, env, interrupt_on=b"pass ")
    screen = pyte.Screen(80, 24)
    pyte.ByteStream(screen).feed(out)
    shown = [line.rstrip() for line in screen.display if line.strip()]
    assert status == 130
    assert shown == ["dcode: interrupted; nothing was written"]  # no panel border, no ^C, nothing else
    assert modes & termios.ECHO  # the terminal echoes keys again
    assert (repo / "geo.py").read_bytes() == before


# -- dcode models, dcode info ----------------------------------------------------------------------


def test_models_never_breaks_a_name(repo, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    lines = invoke("models").stdout.splitlines()
    assert lines[0].split()[:5] == ["name", "kind", "family", "parameters", "size"]
    rows = {line.split()[1 if line.startswith("*") else 0]: line for line in lines[1:]}
    assert {"dcode-mini", "dcode-small"} <= set(rows)
    assert "dcode-small  shipped  dcode-small" in rows["dcode-small"]


@pytest.fixture
def adapted_model(tmp_path) -> Path:
    """dcode-small's manifest and config with a 3 MiB adapter of its own (the base is not pulled)."""
    model = tmp_path / "adapted"
    model.mkdir()
    for name in ("base.json", "config.json"):
        shutil.copy(REPO_ROOT / "weights" / "dcode-small" / name, model / name)
    (model / "adapter-00001-of-00001.safetensors").write_bytes(b"\0" * 3 * 2**20)
    return model


def info_lines(model: Path) -> dict[str, str]:
    """`dcode info`'s lines for people, fact by fact."""
    return dict(re.split(r"\s{2,}", line, maxsplit=1) for line in invoke("--model", str(model), "info").stdout.splitlines())


def test_info_counts_an_adapted_models_base_and_adapter_apart(repo, adapted_model, tmp_path, monkeypatch):
    from dcode.model.base import BaseManifest, base_path

    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path / "cache"))

    data = json.loads(invoke("--model", str(adapted_model), "info", "--json").stdout)
    assert data["adapter_on_disk"] == 3 * 2**20 and data["base_on_disk"] is None
    assert "weights_on_disk" not in data
    assert info_lines(adapted_model)["base on disk"] == "not pulled (`dcode pull` fetches it)"
    base = base_path(BaseManifest.load(adapted_model))  # in this test's cache
    base.parent.mkdir(parents=True)
    base.write_bytes(b"\0" * 5 * 2**20)
    converted = Path(f"{base}.dcode")  # what dcode keeps beside it counts too
    converted.mkdir()
    (converted / "base.safetensors").write_bytes(b"\0" * 2**20)
    data = json.loads(invoke("--model", str(adapted_model), "info", "--json").stdout)
    assert data["base_on_disk"] == 6 * 2**20 and data["adapter_on_disk"] == 3 * 2**20
    shown = info_lines(adapted_model)
    assert shown["adapter on disk"] == "3.00 MiB" and shown["base on disk"] == "6.00 MiB"


# -- threads ---------------------------------------------------------------------------------------


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_fill_runs_the_model_on_the_threads_setting(repo, monkeypatch, torch_threads):
    for threads in ("1", "3"):
        monkeypatch.setenv("DCODE_THREADS", threads)
        assert invoke("fill", "geo.py", "--diff").exit_code == 0
        assert torch.get_num_threads() == int(threads)


def test_every_front_end_that_loads_through_the_session_sets_threads(torch_threads, shipped_model):
    """The shell, the hook, `dcode bench` and `dcode ask` load their model through `session.load`."""
    torch.set_num_threads(2)
    session.load(Settings(model=str(shipped_model), device="cpu", threads=1))
    assert torch.get_num_threads() == 1
