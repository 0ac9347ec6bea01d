"""The context benchmark runs end to end on a small tree (figures are reported, not asserted)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dcode.bench.context import _pick_targets, format_bench, run_context_bench
from dcode.context.index import RepoIndex
from tests.conftest import REPOS



@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def test_bench_measures_index_and_assembly(tmp_path: Path) -> None:
    shutil.copytree(REPOS, tmp_path / "repos")
    figures = run_context_bench(tmp_path / "repos", lambda s: len(s) // 4 + 1, budget_tokens=512, targets=5)
    assert figures["files_indexed"] == 19
    assert figures["targets"] == 5 and figures["failures"] == []
    assert figures["cold_index_s"] > 0 and len(figures["warm_index_runs_s"]) == 3
    assert 0 < figures["assembly_mean_ms"] <= figures["assembly_p95_ms"] * 5
    table = format_bench(figures)
    for label in ("cold index", "warm re-index", "context assembly", "p95"):
        assert label in table
    assert not (tmp_path / "xdg-cache").exists()  # the bench's cold run uses its own temporary cache


def test_targets_are_spread_over_files(tmp_path: Path) -> None:
    shutil.copytree(REPOS, tmp_path / "repos")
    index = RepoIndex.open(tmp_path / "repos", use_cache=False)
    picked = _pick_targets(index, 4)
    assert len(picked) == 4 and len({p.split("::")[0] for p in picked}) == 4
