"""`dcode bench contention`: the same fill quiet and beside a busy loop, threads chosen again
under load, the ratio against the 2x target, and no busy loop left behind."""

from __future__ import annotations

import subprocess

import pytest
import torch
from typer.testing import CliRunner

from dcode.bench import contention
from dcode.bench.contention import Timing, format_contention, run_contention_bench
from dcode.diffusion.sampler import DecodeOptions
from dcode.model import threads


@pytest.fixture(autouse=True)
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_are_chosen_again_under_load_and_the_loop_is_stopped(tiny_model, monkeypatch):
    choices = iter([2, 1])  # the cores free when quiet, then with the loop running
    monkeypatch.setattr(threads, "default_threads", lambda: next(choices))
    loops: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def spawn(*args, **kwargs):
        loops.append(popen(*args, **kwargs))
        return loops[-1]

    monkeypatch.setattr(contention.subprocess, "Popen", spawn)
    timings = run_contention_bench(tiny_model, DecodeOptions(max_tokens=4), None, runs=2)
    assert [(t.label, t.threads, len(t.seconds)) for t in timings] == [
        ("quiet", 2, 2), ("one core busy", 1, 2), ("one core busy, quiet threads", 2, 2)]
    assert all(s > 0 for t in timings for s in t.seconds)
    (loop,) = loops
    assert loop.poll() is not None  # killed and reaped


def test_the_verdict_against_the_target():
    quiet = Timing("quiet", 2, [1.0, 1.2, 1.1])
    assert format_contention("m", [quiet, Timing("one core busy", 1, [2.0, 2.1, 2.3])]).endswith("1.91x, met")
    report = format_contention("m", [quiet, Timing("one core busy", 1, [2.5, 2.4, 2.6])])
    assert report.splitlines()[-1] == "target: one core busy no worse than 2x quiet: 2.27x, missed"


def test_the_command_runs_on_the_shipped_model(monkeypatch, tmp_path):
    from dcode.cli.app import app

    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("DCODE_MODEL", raising=False)
    monkeypatch.setenv("DCODE_MAX_TOKENS", "8")
    result = CliRunner().invoke(app, ["bench", "contention", "--runs", "1", "--threads", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dcode bench contention: dcode-mini")
    assert lines[2].split()[:2] == ["quiet", "1"] and lines[3].split()[:4] == ["one", "core", "busy", "1"]
    assert lines[-1].endswith((", met", ", missed"))
