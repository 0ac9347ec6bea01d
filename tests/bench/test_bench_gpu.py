"""`dcode bench gpu` in its reduced form on CPU: every section runs (or records why not), the
JSON is written, the table prints, and the checks can fail."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from dcode.bench import checks
from dcode.bench.common import BenchContext
from dcode.bench.gpu import run_gpu_bench
from dcode.cli.app import app

SECTIONS = ("correctness", "end_to_end", "speed", "step_7b", "training")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench-gpu.json"
    result = CliRunner().invoke(app, ["bench", "gpu", "--device", "cpu", "--quick", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.stdout


def test_quick_run_records_every_section(quick_run):
    report, table = quick_run
    assert report["quick"] is True and report["device"].startswith("CPU") and report["date"]
    assert list(report["sections"]) == list(SECTIONS)
    for name, section in report["sections"].items():
        assert section["status"] in ("ok", "fail", "skipped"), (name, section)
        assert section["status"] != "skipped" or section["reason"]
        assert f"[{name}]" in table
    assert report["sections"]["step_7b"]["rows"][0]["cached_ms"] > 0
    assert report["sections"]["training"]["runs"]["dcode-mini"]["tokens_per_s"] > 0


def test_quick_run_compares_logits_and_records_skips(quick_run):
    report, _ = quick_run
    models = report["sections"]["correctness"]["models"]
    for name in ("dream-tiny", "llada-tiny"):
        assert models[name]["ok"] and models[name]["cpu_fp32_vs_reference"]["max_abs"] <= 1e-4
    assert models["dcode-mini"]["device_bf16_vs_cpu"]["argmax_agree"] > 0.9
    assert models["dcode-small"]["skipped"]
    runs = report["sections"]["end_to_end"]["runs"]
    assert runs["complete"]["ok"] and runs["fill"]["changed"]
    assert "CUDA only" in runs["oom"]["skipped"]
    speed = report["sections"]["speed"]["models"]["dcode-mini"]
    assert speed["holes"]["single-line"]["rows"][0]["name"] == "1 token/pass"
    assert "CUDA only" in speed["compiled"]["skipped"]


def test_a_wrong_reference_logit_fails_the_check(tmp_path, monkeypatch):
    for name in checks.FIXTURE_NAMES:
        shutil.copytree(checks.FIXTURES / name, tmp_path / name)
    expected = json.loads((tmp_path / "llada-tiny" / "expected.json").read_text())
    expected["logits"][3][7] += 1e-3  # ten times the float32 tolerance, in one logit
    (tmp_path / "llada-tiny" / "expected.json").write_text(json.dumps(expected))
    monkeypatch.setattr(checks, "FIXTURES", tmp_path)
    result = checks.fixture_parity("llada-tiny", torch.device("cpu"))
    assert not result["ok"] and not result["cpu_fp32_vs_reference"]["ok"]
    assert checks.fixture_parity("dream-tiny", torch.device("cpu"))["ok"]
    assert checks.verdict({"llada-tiny": result}) == "fail"


def test_bf16_check_fails_on_a_changed_argmax():
    ref = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    assert checks.compare_bf16(ref.bfloat16(), ref)["ok"]
    swapped = ref.clone()
    swapped[0, 2] = 6.0  # a clear choice (margin 4 > tolerance 0.25) now goes elsewhere
    assert not checks.compare_bf16(swapped, ref)["ok"]


def test_the_oom_check_wants_one_line_that_a_user_sees():
    said = checks.one_line_error
    assert said({"stderr": "dcode: error: the GPU ran out of memory", "stdout": ""}) == "dcode: error: the GPU ran out of memory"
    error = {"error": {"code": "model_unavailable", "message": "the GPU ran out of memory"}}
    assert said({"stderr": "", "stdout": json.dumps(error)}) == "the GPU ran out of memory"
    assert said({"stderr": "Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError: CUDA", "stdout": ""}) is None


def test_a_failing_section_is_recorded_and_the_rest_runs(tmp_path):
    def broken(ctx: BenchContext):
        raise RuntimeError("boom\nsecond line")

    def fine(ctx: BenchContext):
        return {"status": "ok", "value": 1}, ["  value 1"]

    out = tmp_path / "b.json"
    table = run_gpu_bench("cpu", out, quick=True, only=[("broken", broken), ("fine", fine)])
    sections = json.loads(out.read_text())["sections"]
    assert sections["broken"] == {"status": "error", "error": "RuntimeError: boom", "seconds": sections["broken"]["seconds"]}
    assert sections["fine"]["value"] == 1 and "[fine] ok" in table


def test_a_spent_budget_skips_and_records(tmp_path):
    out = tmp_path / "b.json"
    run_gpu_bench("cpu", out, quick=False, minutes=0)
    sections = json.loads(out.read_text())["sections"]
    assert list(sections) == list(SECTIONS)
    assert all(s["status"] == "skipped" and "time budget" in s["reason"] for s in sections.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_no_gpu_and_no_device_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["bench", "gpu", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 3
    assert result.stderr.strip() == ("dcode: error: dcode bench gpu needs a CUDA GPU and none is available "
                                     "(pass --device cpu for a CPU run)")
    assert not (tmp_path / "b.json").exists()


def test_a_json_path_that_cannot_be_written_is_a_one_line_error_before_any_section(tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["bench", "gpu", "--device", "cpu", "--json", str(tmp_path / "file" / "b.json")])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"dcode: error: {tmp_path / 'file' / 'b.json'}: cannot write the results")
    assert "[correctness]" not in result.stdout
