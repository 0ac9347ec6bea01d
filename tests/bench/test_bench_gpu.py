"""`dcode bench gpu` in its reduced form on CPU: every section runs (or records why not), the
JSON is written, the table prints, and the checks can fail."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from dcode.bench import checks
from dcode.bench.common import BenchContext, met_word, target_status
from dcode.bench.decoding import Row, against_targets, targets_line
from dcode.bench.gpu import run_gpu_bench
from dcode.bench.speed import targets_met
from dcode.cli.app import app

SECTIONS = ("correctness", "end_to_end", "speed", "step_7b", "training")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench-gpu.json"
    result = CliRunner().invoke(app, ["bench", "gpu", "--device", "cpu", "--quick", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.stdout


def measured_targets(section: dict) -> list[bool]:
    """Every `met` a timing section recorded, wherever it sits in the section's JSON."""
    if isinstance(section, dict):
        return ([section["met"]] if isinstance(section.get("met"), bool) else []) + \
            [m for value in section.values() for m in measured_targets(value)]
    if isinstance(section, list):
        return [m for value in section for m in measured_targets(value)]
    return []


def test_quick_run_records_every_section(quick_run):
    report, table = quick_run
    assert report["quick"] is True and report["device"].startswith("CPU") and report["date"]
    assert list(report["sections"]) == list(SECTIONS)
    sections = report["sections"]
    # The checks pass on CPU; nothing is skipped for time in a quick run.
    assert sections["correctness"]["status"] == sections["end_to_end"]["status"] == "ok"
    for name in ("speed", "step_7b", "training"):
        met = measured_targets(sections[name])
        assert sections[name]["status"] == ("ok" if all(met) else "missed"), (name, met)
        assert f"[{name}] {sections[name]['status']} (" in table
    assert table.count("NOT met") == sum(not m for name in ("speed", "step_7b", "training")
                                         for m in measured_targets(sections[name]))
    assert sections["step_7b"]["rows"][0]["cached_ms"] > 0
    training = sections["training"]["runs"]["dcode-mini"]
    assert training["tokens_per_s"] > 0
    assert training["mfu"] is None and training["met"] is None  # no peak on a CPU: no MFU, no verdict
    assert "no MFU: peaks are known for CUDA GPUs only, not cpu" in table


def test_quick_run_compares_logits_and_records_skips(quick_run):
    report, _ = quick_run
    models = report["sections"]["correctness"]["models"]
    for name in ("dream-tiny", "llada-tiny"):
        assert models[name]["ok"] and models[name]["cpu_fp32_vs_reference"]["max_abs"] <= 1e-4
    assert models["dcode-mini"]["device_bf16_vs_cpu"]["argmax_agree"] > 0.9
    assert models["dcode-small"]["skipped"]
    runs = report["sections"]["end_to_end"]["runs"]
    assert runs["complete"]["ok"] and runs["fill"]["ok"] and runs["refine"]["ok"]
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


def rows_at(threshold_tok_s: float, threshold_exact: float) -> list[Row]:
    """One token per pass at 10 tokens/s and 50% exact, and one threshold schedule."""
    return [Row("1 token/pass", 100, 100, 10.0, [], exact=50.0),
            Row("threshold 0.9, no cache", 100, 30, 1.0, [], exact=50.0),  # fastest, but not a cached schedule
            Row("threshold 0.9", 100, 40, 100 / threshold_tok_s, [], exact=threshold_exact)]


@pytest.mark.parametrize("tok_s, exact, met", [(60.0, 50.0, True), (25.0, 50.0, False), (60.0, 48.0, False)],
                         ids=["6x, no loss", "2.5x", "6x, 2 points lost"])
def test_a_missed_speed_target_reads_as_missed(tok_s, exact, met):
    target = against_targets(rows_at(tok_s, exact))
    assert target["best"] == "threshold 0.9" and target["met"] is met
    assert targets_line(target).endswith(": met" if met else ": NOT met")
    models = {"dcode-mini": {"holes": {"single-line": {"target": target}, "whole-function": {"skipped": "none"}},
                             "complete": {"met": True}}}
    assert target_status(targets_met(models)) == ("ok" if met else "missed")


def test_a_section_status_counts_only_measured_targets():
    assert target_status([True, None, True]) == "ok"
    assert target_status([None]) == "ok"  # nothing to miss (no MFU on a CPU); its line says so
    assert target_status([True, False, None]) == "missed"
    assert (met_word(True), met_word(False), met_word(None)) == ("met", "NOT met", "no target measured")
