"""`dcode bench context`: how fast the index and context assembly are on a real tree.

Measures a cold index (fresh cache directory), warm re-indexes (nothing changed), and the latency
of resolving a target and assembling its context for ~20 functions spread over the tree. The
targets are picked deterministically (every n-th file with a function) so runs are comparable.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcode.bench.common import one_line
from dcode.context.gather import gather_context
from dcode.context.index import RepoIndex
from dcode.edit.targets import resolve_target
from dcode.errors import DcodeError, InputError

WARM_RUNS = 3


@dataclass
class TokenCounter:
    """How the context budget counts tokens, and what the table says about it."""

    count: Callable[[str], int]
    source: str


def estimated_tokens(text: str) -> int:
    return len(text) // 4 + 1


def model_token_counter(model: str | None) -> TokenCounter:
    """The model's tokenizer; when the model does not load, an estimate of 4 characters a token
    that the table names, with the reason (the budget, and so the chunks, then differ)."""
    from dcode.model.loader import load_model

    try:
        loaded = load_model(model, device="cpu")
    except DcodeError as err:
        return TokenCounter(estimated_tokens, f"estimated as characters / 4 + 1, as the model did not load: {one_line(err)}")
    tok = loaded.tokenizer
    return TokenCounter(lambda text: len(tok.encode(text)), f"{loaded.name}'s tokenizer")


def _pick_targets(index: RepoIndex, count: int) -> list[str]:
    """`path::qualname` specs for one function-with-a-body from evenly spaced files."""
    candidates: list[str] = []
    for rel, info in sorted(index.files.items()):
        qualnames = [d.qualname for d in info.definitions]
        functions = [
            d for d in info.definitions
            if d.kind in ("function", "method") and d.has_body and qualnames.count(d.qualname) == 1
        ]  # fmt: skip
        if functions:
            candidates.append(f"{rel}::{functions[len(functions) // 2].qualname}")
    if len(candidates) <= count:
        return candidates
    step = len(candidates) / count
    return [candidates[int(i * step)] for i in range(count)]


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0.0


def run_context_bench(
    root: Path,
    tokens: TokenCounter,
    budget_tokens: int = 2048,
    targets: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Time cold/warm indexing of `root` and context assembly; returns the figures (seconds/ms)."""
    root = Path(root).resolve()
    with tempfile.TemporaryDirectory(prefix="dcode-bench-") as tmp:
        cache_dir = Path(tmp)
        started = time.perf_counter()
        index = RepoIndex.open(root, cache_dir=cache_dir, progress=progress)
        cold = time.perf_counter() - started
        warm_runs = []
        for _ in range(WARM_RUNS):
            del index  # free the previous index first so the timing does not include tearing it down
            started = time.perf_counter()
            index = RepoIndex.open(root, cache_dir=cache_dir)
            warm_runs.append(time.perf_counter() - started)
        resolve_ms: list[float] = []
        assemble_ms: list[float] = []
        chunk_counts: list[int] = []
        failures: list[str] = []
        for spec in _pick_targets(index, targets):
            try:
                started = time.perf_counter()
                target = resolve_target(spec, root)
                resolved = time.perf_counter()
                result = gather_context(target, index, budget_tokens, tokens.count)
                done = time.perf_counter()
            except InputError as exc:
                failures.append(f"{spec}: {exc}")
                continue
            resolve_ms.append((resolved - started) * 1000)
            assemble_ms.append((done - resolved) * 1000)
            chunk_counts.append(len(result.chunks))
    return {
        "root": str(root),
        "files_listed": index.stats.files_listed,
        "files_indexed": index.stats.files_indexed,
        "files_skipped": index.stats.files_skipped,
        "definitions": index.stats.definitions,
        "cold_index_s": cold,
        "warm_index_s": statistics.median(warm_runs),
        "warm_index_runs_s": warm_runs,
        "targets": len(assemble_ms),
        "budget_tokens": budget_tokens,
        "tokens_counted_by": tokens.source,
        "resolve_mean_ms": statistics.fmean(resolve_ms) if resolve_ms else 0.0,
        "assembly_mean_ms": statistics.fmean(assemble_ms) if assemble_ms else 0.0,
        "assembly_p95_ms": _p95(assemble_ms),
        "chunks_mean": statistics.fmean(chunk_counts) if chunk_counts else 0.0,
        "failures": failures,
    }


def format_bench(d: dict[str, Any]) -> str:
    """A short table of the figures, with the targets the issue sets (2-core machine)."""
    rows = [
        ("tree", d["root"]),
        ("files indexed", f"{d['files_indexed']} of {d['files_listed']} listed ({d['files_skipped']} skipped)"),
        ("definitions", f"{d['definitions']}"),
        ("cold index", f"{d['cold_index_s']:.2f} s"),
        ("warm re-index", f"{d['warm_index_s']:.3f} s (median of {len(d['warm_index_runs_s'])}; target < 1 s)"),
        ("resolve target", f"{d['resolve_mean_ms']:.1f} ms mean"),
        (
            "context assembly",
            f"{d['assembly_mean_ms']:.1f} ms mean, {d['assembly_p95_ms']:.1f} ms p95 over {d['targets']} targets "
            f"at {d['budget_tokens']} tokens (target < 50 ms)",
        ),
        ("chunks per target", f"{d['chunks_mean']:.1f} mean"),
        ("tokens counted by", d["tokens_counted_by"]),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    lines.extend(f"failed: {failure}" for failure in d.get("failures", []))
    return "\n".join(lines)
