"""The dcode-small GPU run's plumbing (dcode/train/gpu.py): the base cut into parts that fit a
device call and joined back only when its pinned sha256 matches, the adapter sent out as few
files as a call brings back, and the closing table."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from dcode.errors import ModelError
from dcode.model.base import BaseManifest, base_path
from dcode.train.gpu import join_base, print_table, send_out, split_base

BASE = bytes(range(256)) * 5 + b"tail"  # 1284 bytes: 13 parts of 100, the last one short


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model directory whose base.json pins BASE, and BASE where `dcode pull` would put it."""
    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "tiny-small"
    folder.mkdir()
    manifest = {"package": "tiny-base", "version": "1.0", "wheel": "tiny_base-1.0-py3-none-any.whl",
                "wheel_sha256": "0" * 64, "member": "tiny_base/tiny.gguf",
                "member_sha256": hashlib.sha256(BASE).hexdigest(), "size": len(BASE)}
    (folder / "base.json").write_text(json.dumps(manifest))
    target = base_path(BaseManifest.load(folder))
    target.parent.mkdir(parents=True)
    target.write_bytes(BASE)
    return folder


def test_the_base_travels_in_parts_and_is_joined_back_in_order(model_dir: Path, tmp_path: Path):
    parts = split_base(model_dir, tmp_path / "parts", part_bytes=100)
    # One folder per part (a call carries one folder), numbered from 0; 13 parts, so a join that
    # sorted part10 before part2 would not give the pinned bytes back.
    assert [p.relative_to(tmp_path / "parts").as_posix() for p in parts] == [f"{i}/base.part{i}" for i in range(13)]
    assert [p.stat().st_size for p in parts] == [100] * 12 + [84]
    target = base_path(BaseManifest.load(model_dir))
    target.unlink()  # the machine that joins has no base
    assert join_base(model_dir, tmp_path / "parts") == target
    assert target.read_bytes() == BASE


def test_a_corrupt_part_is_refused_and_nothing_is_left_behind(model_dir: Path, tmp_path: Path):
    parts = split_base(model_dir, tmp_path / "parts", part_bytes=100)
    target = base_path(BaseManifest.load(model_dir))
    target.unlink()
    parts[3].write_bytes(b"x" * 100)
    with pytest.raises(ModelError, match=r"the joined base has sha256 [0-9a-f]{64}, base.json pins "
                                         + hashlib.sha256(BASE).hexdigest()):
        join_base(model_dir, tmp_path / "parts")
    assert not target.exists() and not target.with_suffix(".joining").exists()


def test_an_export_goes_out_as_its_shards_and_one_tar(tmp_path: Path):
    export = tmp_path / "dcode-small"
    export.mkdir()
    files = {"adapter-00001.safetensors": b"a" * 10, "adapter-00002.safetensors": b"b" * 20,
             "config.json": b"{}", "README.md": b"# card\n"}
    for name, data in files.items():
        (export / name).write_bytes(data)
    out = tmp_path / "out"
    sent = send_out(export, out)
    assert [p.name for p in sent] == ["adapter-00001.safetensors", "adapter-00002.safetensors", "dcode-small.tar"]
    assert all((out / name).read_bytes() == files[name] for name in files if name.endswith(".safetensors"))
    with tarfile.open(out / "dcode-small.tar") as tar:
        assert sorted(tar.getnames()) == ["dcode-small/README.md", "dcode-small/config.json"]
        assert tar.extractfile("dcode-small/README.md").read() == b"# card\n"
    # A later export replaces the files sent before, and no temporary file is left for the call to bring back.
    (export / "README.md").write_bytes(b"# newer card\n")
    send_out(export, out)
    with tarfile.open(out / "dcode-small.tar") as tar:
        assert tar.extractfile("dcode-small/README.md").read() == b"# newer card\n"
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in sent]


def test_the_closing_table_has_a_row_per_model_and_kind(capsys):
    row = {"kind": "single", "n": 50, "exact": 0.125, "passed": None, "forward_passes": 3.25}
    summary = {"device": "NVIDIA H200", "tokens": 1234567, "train_s": 300.0, "tok_s": 4115, "mfu_6n": 0.0123,
               "best_val_loss": 2.34567, "wall_s_total": 400.0,
               "eval": {"dcode-small": [row, {**row, "kind": "functional", "n": 24, "passed": 0.25}],
                        "base left-to-right": [{**row, "exact": 0.5}]}}
    print_table(summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("NVIDIA H200: 1,234,567 tokens in 300.0 s (4,115 tok/s, MFU 0.0123), best val loss 2.3457, "
                        "wall 400.0 s")
    assert lines[2].split() == ["model", "holes", "n", "exact", "tests", "fwd/hole"]
    assert [line.split() for line in lines[3:]] == [
        ["dcode-small", "single", "50", "12.5%", "-", "3.2"],
        ["dcode-small", "functional", "24", "12.5%", "25.0%", "3.2"],
        ["base", "left-to-right", "single", "50", "50.0%", "-", "3.2"],
    ]


def test_sharded_eval_merges_each_model_and_reports_what_missed_the_deadline(tmp_path: Path, capsys):
    from dcode.eval.harness import Report
    from dcode.eval.tasks import functional_tasks, holdout_tasks, save_tasks
    from dcode.train.gpu import MINI, Decoder, evaluate_sharded, print_eval_table
    from tests.conftest import DATA
    from tests.eval.test_eval import stdlib_files

    holes = tmp_path / "holes.json"
    tasks = holdout_tasks(stdlib_files(), 2, 0, seed=0) + functional_tasks(DATA / "functional", n=3, seed=0)
    save_tasks(tasks, holes)
    mini = ("--model", str(MINI))
    decoders = (Decoder("mini", "functional", mini, 2, ("functional",)), Decoder("mini", "single", mini, 1, ("single",)),
                Decoder("mini, none", "multi", mini, 1, ("multi",)))
    out = tmp_path / "out"
    out.mkdir()
    table = evaluate_sharded(holes, out, tmp_path / "work", "cpu", 120.0, decoders)
    # One report per model, its kinds from their own decoders, the holes in the set's order.
    merged = Report.from_json((out / "eval-mini.json").read_text())
    assert sorted(r.id for r in merged.results) == sorted(t.id for t in tasks)
    assert [s.kind for s in merged.summaries] == ["single", "functional"]
    assert table["mini"] == {"summaries": [dataclasses.asdict(s) for s in merged.summaries], "unfinished": []}
    assert table["mini, none"] == {"summaries": [], "unfinished": []}  # no multi-line hole: nothing to run
    # A kind whose shards are still running at the deadline is stopped and named, not dropped silently.
    late = evaluate_sharded(holes, tmp_path / "late-out", tmp_path / "late", "cpu", 0.0, decoders[:1])
    assert late == {"mini": {"summaries": [], "unfinished": ["functional"]}}
    print_eval_table({**table, **late})
    printed = capsys.readouterr().out
    assert "functional      not one hole finished before the deadline" in printed


def test_only_the_named_decoders_run_and_an_unknown_name_is_refused():
    from dcode.train.gpu import DECODERS, chosen_decoders

    assert chosen_decoders(None) == DECODERS
    assert [d.slug for d in chosen_decoders(["ltr-he-multi", "small-multi", "ltr-he-multi"])] == ["ltr-he-multi", "small-multi"]
    with pytest.raises(SystemExit, match="unknown decoder small-everything"):
        chosen_decoders(["small-everything"])
    # Every kind of hole has a decoder of dcode-small and of the base left to right.
    for label in ("dcode-small", "base left to right"):
        kinds = [k for d in DECODERS if d.label == label for k in d.kinds]
        assert sorted(kinds) == sorted(["single", "functional", "humaneval", "multi", "humaneval-multi"])
