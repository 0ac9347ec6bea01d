"""`dcode eval` records every scored candidate ending, and `--rechoose` scores a run again with
another ending rule without decoding: with the run's own rule it gives the run's answers back."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcode.eval.harness import Rechooser, Report, TaskResult
from dcode.eval.tasks import InfillTask, holdout_tasks, save_tasks
from dcode.sources.packages import SourceFile


def _stdlib(names: tuple[str, ...]) -> list[SourceFile]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [SourceFile("stdlib/" + n, n + ".py", (root / f"{n}.py").read_text(encoding="utf-8")) for n in names]


def _result(task_id: str, endings: list[dict] | None, predicted: str = "") -> TaskResult:
    return TaskResult(task_id, "multi", "m.py", "x = 1\n", predicted, False, 0.0, True, None, 9, 3, 0.5, endings)


def test_the_rechosen_answer_follows_the_rule_and_keeps_the_run_s_costs():
    endings = [{"text": "    a = 1\n", "branch": 0, "text_logp": -3.0, "suffix_logp": -8.0, "text_tokens": 4, "suffix_tokens": 10},
               {"text": "    a = 1\n    return a\n", "branch": 0, "text_logp": -8.0, "suffix_logp": -4.0,
                "text_tokens": 9, "suffix_tokens": 10}]
    report = Report("m", {}, [], [_result("h1", endings, "    a = 1\n"), _result("h2", None, "    pass\n")])
    task = InfillTask("h1", "multi", "m.py", "def f():\n", "", "x = 1\n", "def f():\n", "")
    short, whole = (Rechooser(report, rule)(task) for rule in ("joint", "suffix"))
    assert (short.text, whole.text) == ("    a = 1\n", "    a = 1\n    return a\n")
    assert (whole.forward_passes, whole.tokens, whole.wall_s) == (9, 3, 0.5)
    # A hole decoded with one candidate (nothing was scored) keeps its answer under any rule.
    other = InfillTask("h2", "multi", "m.py", "def g():\n", "", "x = 1\n", "def g():\n", "")
    assert Rechooser(report, "mean")(other).text == "    pass\n"


def test_fewer_branches_choose_among_the_first_branches_endings_only():
    endings = [{"text": "    return a\n", "branch": 0, "text_logp": -2.0, "suffix_logp": -9.0, "text_tokens": 3, "suffix_tokens": 8},
               {"text": "    return b\n", "branch": 1, "text_logp": -3.0, "suffix_logp": -1.0, "text_tokens": 3, "suffix_tokens": 8},
               {"text": "    return\n", "branch": 0, "text_logp": -1.0, "suffix_logp": -12.0, "text_tokens": 2, "suffix_tokens": 8}]
    report = Report("m", {}, [], [_result("h1", endings, "    return b\n")])
    block = InfillTask("h1", "multi", "m.py", "def f():\n", "", "x = 1\ny = 2\n", "def f():\n", "")
    assert Rechooser(report, "suffix", 2)(block).text == "    return b\n"
    assert Rechooser(report, "suffix", 1)(block).text == "    return a\n"
    # No options: a block's defaults, the greedy branch and the suffix's own log p.
    assert Rechooser(report)(block).text == "    return a\n"
    line = InfillTask("h1", "single", "m.py", "def f():\n", "", "    return a\n", "def f():\n", "")
    assert Rechooser(report)(line).text == "    return b\n"  # a line's: four branches, joint log p


def test_a_hole_whose_first_branches_left_no_candidate_keeps_the_run_s_answer_and_is_named():
    """The greedy branch was given up (or passed over) in the run: one branch alone would have
    grown it on, so its answer cannot be chosen from the record."""
    endings = [{"text": "    return b\n", "branch": 1, "text_logp": -3.0, "suffix_logp": -1.0, "text_tokens": 3,
                "suffix_tokens": 8}]
    report = Report("m", {}, [], [_result("h1", endings, "    return b\n")])
    block = InfillTask("h1", "multi", "m.py", "def f():\n", "", "x = 1\ny = 2\n", "def f():\n", "")
    chooser = Rechooser(report, "suffix", 1)
    assert chooser(block).text == "    return b\n" and chooser.kept == ["h1"]
    both = Rechooser(report, "suffix", 2)
    assert both(block).text == "    return b\n" and both.kept == []


def test_a_run_s_own_rule_gives_its_answers_back(anchored, small, monkeypatch, tmp_path):
    from dcode.cli.app import app

    monkeypatch.setenv("DCODE_CACHE_DIR", str(small.cache))
    holes = tmp_path / "holes.json"
    save_tasks(holdout_tasks(_stdlib(("textwrap", "shlex")), 3, 4, seed=1), holes)
    model_dir = str(anchored.path)
    run = tmp_path / "run.json"
    result = CliRunner().invoke(app, ["eval", "--model", model_dir, "--tasks", str(holes), "--best-of", "3",
                                      "--ending", "mean", "--json", str(run)])
    assert result.exit_code == 0, result.output
    decoded = Report.from_json(run.read_text())
    assert decoded.settings["ending"] == "mean"
    assert any(r.endings and len(r.endings) >= 2 for r in decoded.results)  # candidates were scored
    again = tmp_path / "again.json"
    result = CliRunner().invoke(app, ["eval", "--tasks", str(holes), "--rechoose", str(run), "--ending", "mean",
                                      "--best-of", "3", "--json", str(again)])
    assert result.exit_code == 0, result.output
    rechosen = Report.from_json(again.read_text())
    assert [(r.id, r.predicted) for r in rechosen.results] == [(r.id, r.predicted) for r in decoded.results]
    # Another rule, and fewer branches, are what decoding with them gives.
    for extra in (["--ending", "joint", "--best-of", "3"], ["--ending", "suffix", "--best-of", "1"]):
        direct = tmp_path / "direct.json"
        result = CliRunner().invoke(app, ["eval", "--model", model_dir, "--tasks", str(holes), *extra, "--json", str(direct)])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(app, ["eval", "--tasks", str(holes), "--rechoose", str(run), *extra, "--json", str(again)])
        assert result.exit_code == 0, result.output
        assert [r.predicted for r in Report.from_json(again.read_text()).results] == \
            [r.predicted for r in Report.from_json(direct.read_text()).results]


def test_rechoose_needs_a_rule_and_a_real_report(tmp_path):
    from dcode.cli.app import app

    holes, report = tmp_path / "holes.json", tmp_path / "report.json"
    save_tasks(holdout_tasks(_stdlib(("shlex",)), 1, 0, seed=0), holes)
    report.write_text(json.dumps({"not": "a report"}))
    result = CliRunner().invoke(app, ["eval", "--rechoose", str(report)])
    assert result.exit_code == 2 and "--tasks" in result.output
    from dcode.errors import InputError
    from dcode.eval.commands import rechoose_eval

    with pytest.raises(InputError, match="not a dcode eval report"):
        rechoose_eval(report, holes)
    # A report whose candidates lack their scores, and a report of other holes.
    row = {"id": "x", "kind": "multi", "path": "m.py", "expected": "", "predicted": "", "exact": False, "similarity": 0.0,
           "parses": True, "passed": None, "forward_passes": 1, "tokens": 1, "wall_s": 0.1}
    report.write_text(json.dumps({"model": "m", "settings": {}, "summary": [],
                                  "results": [{**row, "endings": [{"text": "a"}]}]}))
    with pytest.raises(InputError, match="not a dcode eval report"):
        rechoose_eval(report, holes)
    report.write_text(json.dumps({"model": "m", "settings": {}, "summary": [], "results": [row]}))
    with pytest.raises(InputError, match="none of its holes"):
        rechoose_eval(report, holes)
