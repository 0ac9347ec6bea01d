"""`dcode bench complete` times only calls the server it started answered: a call the thin client
answered in-process stops the bench instead of being timed as "through the server"."""

from __future__ import annotations

import os

import pytest
import torch

from dcode.bench import complete
from dcode.errors import ModelError
from dcode.model.checkpoint import save_checkpoint
from dcode.model.loader import build_model
from tests.conftest import REPO_ROOT, tiny_config


@pytest.fixture
def flags(tmp_path, tiny_tokenizer, monkeypatch) -> dict:
    model = build_model(tiny_config(tiny_tokenizer), tiny_tokenizer, device="cpu", seed=0)
    path = tmp_path / "tiny"
    save_checkpoint(path, model.net.state_dict(), model.config, dtype=torch.float32)
    tiny_tokenizer.save(path / "tokenizer.json")
    for name in [n for n in os.environ if n.startswith("DCODE_")]:
        monkeypatch.delenv(name)
    # The bench points this process at its own discovery directory; monkeypatch puts it back.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    return {"model": str(path), "device": "cpu", "threads": 1}


def test_every_timed_call_went_through_the_server(flags, capsys):
    complete.run_bench_complete(flags, runs=2)
    out = capsys.readouterr().out
    assert out.startswith("dcode complete through dcode serve (tiny, 2 calls, each answered by the server)\n")
    assert "end to end: p50 " in out and "of which the model (median): " in out


def test_a_call_answered_in_process_stops_the_bench(flags, monkeypatch, capsys):
    editors_command = complete.client_command
    monkeypatch.setattr(complete, "client_command", lambda model_dir: [*editors_command(model_dir), "--no-server"])
    with pytest.raises(ModelError, match=r"call 1 was answered in-process, not by the server this bench started"):
        complete.run_bench_complete(flags, runs=2)
    assert capsys.readouterr().out == ""  # no figures
