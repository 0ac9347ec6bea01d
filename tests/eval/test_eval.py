"""Evaluation: metrics pinned by an oracle (100%) and an empty answer (~0%), the task builders,
the engine-backed predictor, and `dcode eval --limit 5` on the shipped model."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcode.eval.harness import (
    Summary,
    TaskResult,
    char_similarity,
    empty_predictor,
    evaluate,
    exact_match,
    ltr_predictor,
    markdown_table,
    model_predictor,
    oracle_predictor,
    run_tests,
    summarize,
)
from dcode.eval.tasks import InfillTask, functional_tasks, holdout_tasks
from dcode.sources.packages import SourceFile
from tests.conftest import DATA, REPO_ROOT

FUNCTIONAL = DATA / "functional"
SHIPPED = REPO_ROOT / "weights" / "dcode-mini"


def stdlib_files() -> list[SourceFile]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [SourceFile("stdlib/" + n, n + ".py", (root / f"{n}.py").read_text(encoding="utf-8")) for n in ("textwrap", "heapq", "bisect", "shlex")]


@pytest.fixture(scope="module")
def tasks() -> list[InfillTask]:
    # 16 functional tasks keep the subprocess runs to a few seconds.
    return holdout_tasks(stdlib_files(), 20, 20, seed=0) + functional_tasks(FUNCTIONAL, n=16, seed=0)


def test_metrics_basics() -> None:
    assert exact_match("  x = 1\n", "x = 1")
    assert exact_match("a = 1   \nb = 2\n", "a = 1\nb = 2")
    assert not exact_match("x = 2", "x = 1")
    assert char_similarity("abc", "abc") == 1.0
    assert char_similarity("", "abc") == 0.0
    assert 0.5 < char_similarity("return x + 1", "return x + 2") < 1.0


def test_task_shapes(tasks: list[InfillTask]) -> None:
    kinds = [t.kind for t in tasks]
    assert kinds.count("single") == 20 and kinds.count("multi") == 20
    for t in tasks:
        lines = t.expected.count("\n")
        assert lines == 1 if t.id.endswith("single") or t.kind == "single" else 2 <= lines <= (10 if t.kind == "multi" else 5)
        assert t.full_prefix.endswith(t.prefix) and t.full_suffix.startswith(t.suffix)
        assert t.full_prefix == "" or t.full_prefix.endswith("\n")  # holes are whole lines
    # Fixed seed: the same holes every time.
    assert [t.expected for t in holdout_tasks(stdlib_files(), 20, 20, seed=0)] == [t.expected for t in tasks if t.kind != "functional"]


def test_oracle_scores_perfect(tasks: list[InfillTask]) -> None:
    for s in summarize(evaluate(tasks, oracle_predictor)):
        assert (s.exact, s.similarity, s.parses) == (1.0, 1.0, 1.0), s.kind
        if s.kind == "functional":
            assert s.passed == 1.0


def test_empty_answer_scores_about_zero(tasks: list[InfillTask]) -> None:
    # Some emptied bodies loop forever (a deleted `i += 1`): a short timeout counts them failed.
    summaries = {s.kind: s for s in summarize(evaluate(tasks, empty_predictor, timeout_s=2.0))}
    for s in summaries.values():
        assert s.exact == 0.0 and s.similarity == 0.0
    assert summaries["functional"].passed <= 0.1  # deleting body lines breaks the tests


def test_functional_runner_catches_wrong_code_and_hangs() -> None:
    task = next(t for t in functional_tasks(FUNCTIONAL) if t.path == "factorial.py" and t.expected.count("\n") == 1)
    assert run_tests(task, task.expected)
    assert not run_tests(task, "    pass\n")
    assert not run_tests(task, "    while True: pass\n", timeout_s=1.0)


def test_model_predictor_runs_the_engine(tiny_model, tasks: list[InfillTask]) -> None:
    from dcode.diffusion.engine import DecodeOptions, infill

    # A random tiny model never writes a pad: an 8-slot hole, 4 tokens a pass, is 8 tokens in 2 passes.
    options = DecodeOptions(tokens_per_step=4, max_tokens=8, initial_tokens=8)
    results = evaluate([tasks[0], tasks[-1]], model_predictor(tiny_model, lambda task: options))
    for task, result in zip([tasks[0], tasks[-1]], results):
        assert (result.tokens, result.forward_passes) == (8, 2) and result.wall_s > 0
        # What is scored is the engine's own fill of the task's hole (greedy: the same every time).
        assert result.predicted == infill(tiny_model, task.prefix, task.suffix, path=task.path, options=options).text
        assert result.exact == exact_match(result.predicted, task.expected)


def test_ltr_predictor_reads_only_the_prefix_within_the_tasks_bound(tiny_model, tasks: list[InfillTask]) -> None:
    bounds = {"single": 3, "multi": 7}
    asked: list[str] = []

    def max_tokens_for(task: InfillTask) -> int:
        asked.append(task.id)
        return bounds[task.kind]

    predict = ltr_predictor(tiny_model, max_tokens_for)
    single = next(t for t in tasks if t.kind == "single")
    multi = next(t for t in tasks if t.kind == "multi")
    for task in (single, multi):
        prediction = predict(task)
        assert 0 <= prediction.tokens <= bounds[task.kind] and prediction.forward_passes >= 1
        # Left to right: the text after the hole is never read.
        elsewhere = dataclasses.replace(task, suffix="raise SystemExit(1)\n", full_suffix="raise SystemExit(1)\n")
        assert predict(elsewhere).text == prediction.text
    assert asked == [single.id, single.id, multi.id, multi.id]  # each task's own bound, every time


def test_eval_command_on_the_shipped_model(tmp_path: Path) -> None:
    assert (SHIPPED / "config.json").is_file(), "the shipped model weights/dcode-mini is missing"
    from dcode.cli.app import app

    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["eval", "--limit", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    counts = {s["kind"]: s["n"] for s in report["summary"]}
    assert counts == {"single": 5, "multi": 5, "functional": 5}
    results = [TaskResult(**r) for r in report["results"]]
    assert all(r.forward_passes >= 1 for r in results)
    # Every hole's scores are those of its prediction, and the summary is made of them.
    for r in results:
        assert r.exact == exact_match(r.predicted, r.expected)
        assert r.similarity == round(char_similarity(r.predicted, r.expected), 4)
        assert (r.passed is not None) == (r.kind == "functional")
    assert [dataclasses.asdict(s) for s in summarize(results)] == report["summary"]
    # The table shows those figures (exact match of each kind, as a percentage).
    for s in report["summary"]:
        assert f"{s['exact']:.1%}" in result.output
    # dcode-mini writes no held-out line exactly (weights/dcode-mini/README.md): a regression
    # that suddenly scores it perfectly means the scoring broke, not that the model improved.
    assert all(s["exact"] < 1.0 and 0.0 <= s["similarity"] < 1.0 for s in report["summary"])


def test_no_multi_keeps_the_same_single_line_holes(tmp_path: Path) -> None:
    from dcode.cli.app import app

    reports = []
    for extra in ([], ["--no-multi"]):
        out = tmp_path / f"report{len(extra)}.json"
        result = CliRunner().invoke(app, ["eval", "--limit", "3", "--no-functional", "--json", str(out), *extra])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text()))
    both, single_only = ([(r["kind"], r["id"], r["expected"]) for r in rep["results"]] for rep in reports)
    assert {k for k, _, _ in both} == {"single", "multi"} and {k for k, _, _ in single_only} == {"single"}
    assert single_only == [row for row in both if row[0] == "single"]


def test_the_model_card_table_has_a_row_per_kind_with_its_figures() -> None:
    rows = [Summary("single", 50, 0.125, 0.5, 0.98, None, 3.25, 1.5, 12.04),
            Summary("functional", 24, 0.0, 0.25, 1.0, 0.0417, 7.0, 2.0, 30.0)]
    lines = markdown_table(rows).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["holes", "n", "exact match", "char similarity", "parses", "tests pass",
                      "forward passes / hole", "tokens / forward", "wall s (total)"]
    assert lines[1].count("|") == lines[0].count("|")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert cells == [["single", "50", "12.5%", "0.500", "98.0%", "-", "3.2", "1.50", "12.0"],
                     ["functional", "24", "0.0%", "0.250", "100.0%", "4.2%", "7.0", "2.00", "30.0"]]


def _without_wall(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def test_a_saved_hole_set_is_evaluated_unchanged_and_its_shards_merge_back(tmp_path: Path) -> None:
    from dcode.cli.app import app
    from dcode.eval.harness import Report, merge_shards

    holes = tmp_path / "holes.json"
    result = CliRunner().invoke(app, ["eval", "--limit", "3", "--functional", str(FUNCTIONAL), "--save-tasks", str(holes)])
    assert result.exit_code == 0, result.output
    saved = json.loads(holes.read_text())
    assert [t["kind"] for t in saved] == ["single"] * 3 + ["multi"] * 3 + ["functional"] * 3
    runs = {}
    for name, extra in (("whole", []), ("first", ["--shard", "0/2"]), ("second", ["--shard", "1/2"])):
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(app, ["eval", "--tasks", str(holes), "--json", str(out), *extra])
        assert result.exit_code == 0, result.output
        runs[name] = Report.from_json(out.read_text())
    whole = runs["whole"]
    # The saved holes are the ones evaluated, in their order; each shard takes every other one.
    assert [(r.id, r.expected) for r in whole.results] == [(t["id"], t["expected"]) for t in saved]
    assert [r.id for r in runs["first"].results] == [t["id"] for t in saved[0::2]]
    assert [r.id for r in runs["second"].results] == [t["id"] for t in saved[1::2]]
    merged = merge_shards([runs["first"], runs["second"]])
    rows = [dataclasses.asdict(r) for r in merged.results]
    assert _without_wall(rows) == _without_wall([dataclasses.asdict(r) for r in whole.results])
    assert [(s.kind, s.n, s.exact, s.similarity, s.passed, s.forward_passes) for s in merged.summaries] == \
        [(s.kind, s.n, s.exact, s.similarity, s.passed, s.forward_passes) for s in whole.summaries]
    assert merged.settings["shards"] == 2 and merged.settings["shard"] is None


def test_a_bad_hole_set_or_shard_is_a_one_line_error(tmp_path: Path) -> None:
    from dcode.errors import InputError
    from dcode.eval.tasks import load_tasks

    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list of holes"}')
    with pytest.raises(InputError, match="not a hole set"):
        load_tasks(bad)
    with pytest.raises(InputError, match="no such file"):
        load_tasks(tmp_path / "missing.json")
    for extra in ([], ["--shard", "2/2"], ["--shard", "x/2"]):
        run = subprocess.run([sys.executable, "-c", "from dcode.cli import main; main()", "eval", "--tasks", str(bad), *extra],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.startswith("dcode: error:") and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert ("not a hole set" if not extra else "I/N" if "x" in extra[1] else "below N") in run.stderr


def test_a_run_stopped_early_keeps_the_holes_it_scored(tmp_path: Path) -> None:
    from dcode.eval.commands import run_eval
    from dcode.eval.harness import Report
    from dcode.eval.tasks import save_tasks

    holes = tmp_path / "holes.json"
    save_tasks(holdout_tasks(stdlib_files(), 4, 0, seed=0), holes)
    partial = tmp_path / "partial.json"
    seen = []

    def stop_after_two(result: TaskResult) -> None:
        seen.append(result)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(str(SHIPPED), tasks_file=holes, on_result=stop_after_two, partial_json=partial)
    report = Report.from_json(partial.read_text())
    assert report.settings["complete"] is False and report.settings["holes"] == 4
    assert [r.id for r in report.results] == [r.id for r in seen] and [s.n for s in report.summaries] == [2]
    whole = run_eval(str(SHIPPED), tasks_file=holes, partial_json=partial)
    assert whole.settings["complete"] is True and len(whole.results) == 4
    assert Report.from_json(partial.read_text()).settings["complete"] is False  # the caller writes the final one
