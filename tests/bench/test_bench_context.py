"""The context benchmark runs end to end on a small tree; its figures say how they were made."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dcode.bench.context import (
    TokenCounter,
    _p95,
    _pick_targets,
    estimated_tokens,
    format_bench,
    model_token_counter,
    run_context_bench,
)
from dcode.context.index import RepoIndex
from tests.conftest import REPOS


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def test_bench_measures_index_and_assembly(tmp_path: Path) -> None:
    shutil.copytree(REPOS, tmp_path / "repos")
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return estimated_tokens(text)

    figures = run_context_bench(tmp_path / "repos", TokenCounter(count, "a test's count"), budget_tokens=512, targets=5)
    assert figures["files_indexed"] == 19
    assert figures["targets"] == 5 and figures["failures"] == []
    assert figures["cold_index_s"] > 0 and len(figures["warm_index_runs_s"]) == 3
    # Five samples: the 95th percentile is the slowest of them, never below the mean.
    assert 0 < figures["assembly_mean_ms"] <= figures["assembly_p95_ms"]
    assert counted  # the budget was counted with the counter given, not another one
    table = format_bench(figures)
    for label in ("cold index", "warm re-index", "context assembly", "p95"):
        assert label in table
    assert table.splitlines()[-1].split(None, 3)[-1] == "a test's count"
    assert not (tmp_path / "xdg-cache").exists()  # the bench's cold run uses its own temporary cache


def test_p95_is_the_sample_below_which_95_percent_fall() -> None:
    assert _p95([]) == 0.0
    assert _p95([3.0, 1.0, 2.0, 5.0, 4.0]) == 5.0  # 5 samples: 95% of them means all of them
    assert _p95([float(i) for i in range(1, 21)]) == 19.0  # 20 samples: 19 are at or below it
    assert _p95([float(i) for i in range(1, 101)]) == 95.0


def test_tokens_are_counted_by_the_models_tokenizer_or_the_table_says_they_are_not(tmp_path: Path, shipped_model) -> None:
    counter = model_token_counter(str(shipped_model))
    assert counter.source == "dcode-mini's tokenizer"
    assert counter.count("def add(a, b):\n    return a + b\n") != estimated_tokens("def add(a, b):\n    return a + b\n")
    missing = tmp_path / "no-model"
    estimate = model_token_counter(str(missing))
    assert estimate.count is estimated_tokens
    assert estimate.source.startswith("estimated as characters / 4 + 1, as the model did not load: ")
    assert str(missing) in estimate.source and "\n" not in estimate.source


def test_targets_are_spread_over_files(tmp_path: Path) -> None:
    shutil.copytree(REPOS, tmp_path / "repos")
    index = RepoIndex.open(tmp_path / "repos", use_cache=False)
    picked = _pick_targets(index, 4)
    assert len(picked) == 4 and len({p.split("::")[0] for p in picked}) == 4
