"""`dcode bench speed`: how fast the sampler fills holes, and what each schedule costs in quality.

For one set of held-out holes it runs the same model under several decoding schedules:
(a) one token per forward pass (the autoregressive-equivalent baseline, same model and cache),
(b) fixed schedules of k tokens per pass, (c) confidence-threshold decoding at several thresholds;
each with and without the context KV cache where it matters. It reports tokens/s, forward passes,
tokens per forward, latency percentiles and exact match, then a generation timing at several
lengths. On CUDA it adds the 7B-class denoising step against the memory-bandwidth floor, as
`dcode bench gpu` measures it (dcode/bench/scale.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from dcode.bench.common import met_word
from dcode.diffusion.engine import generate, infill
from dcode.diffusion.sampler import DecodeOptions
from dcode.errors import InputError
from dcode.model.loader import LoadedModel

SPEEDUP_TARGET = 5.0  # threshold decoding's tokens/s over one token per pass
EXACT_LOSS_TARGET = 1.0  # points of exact match threshold decoding may lose
COMPLETE_P50_TARGET_MS = 30.0  # a warm single-line completion while typing, on a GPU
# On a CPU: dcode-small on 2 threads with a 512-token context (issue 23's target).
COMPLETE_P50_CPU_TARGET_MS = 400.0
SCHEDULES: list[tuple[str, dict]] = [
    ("1 token/pass", {"tokens_per_step": 1, "threshold": None}),
    ("2 tokens/pass", {"tokens_per_step": 2, "threshold": None}),
    ("4 tokens/pass", {"tokens_per_step": 4, "threshold": None}),
    ("threshold 0.95", {"threshold": 0.95}),
    ("threshold 0.9", {"threshold": 0.9}),
    ("threshold 0.9, no cache", {"threshold": 0.9, "use_cache": False}),
    ("threshold 0.7", {"threshold": 0.7}),
    ("threshold 0.5", {"threshold": 0.5}),
]

# The anchored decoder has no diffusion schedule: what it trades is candidates for passes.
ANCHORED_SCHEDULES: list[tuple[str, dict]] = [
    ("greedy (best_of 1)", {"best_of": 1}),
    ("best_of 4", {"best_of": 4}),
    ("best_of 4, 6 drafts from the context", {"best_of": 4, "draft_tokens": 6, "drafter": "context"}),
]


def schedules_for(model: LoadedModel) -> list[tuple[str, dict]]:
    return ANCHORED_SCHEDULES if model.config.decoder == "anchored" else SCHEDULES


def complete_target_ms(model: LoadedModel) -> float:
    return COMPLETE_P50_TARGET_MS if model.device.type == "cuda" else COMPLETE_P50_CPU_TARGET_MS


@dataclass
class Row:
    name: str
    tokens: int
    passes: int
    wall_s: float
    latencies_ms: list[float]
    exact: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    @property
    def tokens_per_forward(self) -> float:
        return self.tokens / self.passes if self.passes else 0.0

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))] if data else 0.0


def _sync(model: LoadedModel) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def timed_infill(model: LoadedModel, row: Row, prefix: str, suffix: str, path: str, options: DecodeOptions):
    """Fill one hole and add its tokens, passes and latency to `row`."""
    _sync(model)
    start = time.perf_counter()
    result = infill(model, prefix, suffix, path=path, options=options)
    _sync(model)
    wall = time.perf_counter() - start
    row.tokens += result.stats.tokens
    row.passes += result.stats.forward_passes
    row.wall_s += wall
    row.latencies_ms.append(wall * 1000)
    return result


def infill_rows(model: LoadedModel, tasks, max_tokens: int) -> list[Row]:
    from dcode.eval.harness import exact_match

    rows = []
    infill(model, tasks[0].prefix, tasks[0].suffix, options=DecodeOptions(max_tokens=8))  # warm-up
    for name, opts in schedules_for(model):
        row = Row(name, 0, 0, 0.0, [])
        hits = 0
        for task in tasks:
            result = timed_infill(model, row, task.prefix, task.suffix, task.path,
                                  DecodeOptions(max_tokens=max_tokens, **opts))
            hits += exact_match(result.text, task.expected)
        row.exact = 100.0 * hits / len(tasks)
        rows.append(row)
    return rows


def complete_row(model: LoadedModel, source: str, requests: int = 10, context_tokens: int = 512) -> Row:
    """Warm single-line completion as an editor asks for it while the user types: a window of
    `context_tokens` tokens of `source` (three quarters before the cursor), the cursor at a line
    start, then one more typed character per request. After the first (warm-up) request the
    model is loaded and, for a causal-context model, the shared prefix is in its cache."""
    tok = model.tokenizer
    ids = tok.encode(source)
    if len(ids) < context_tokens:
        raise InputError(f"the bench source has {len(ids)} tokens, fewer than {context_tokens}")
    text = tok.decode(ids[:context_tokens])
    cut = text.rfind("\n", 0, len(tok.decode(ids[: context_tokens * 3 // 4]))) + 1
    prefix, rest = text[:cut], text[cut:]
    typed = rest[: max(1, min(requests, rest.find("\n") if "\n" in rest else requests))]
    options = DecodeOptions(max_tokens=16, initial_tokens=16)
    infill(model, prefix, rest, path="bench.py", options=options)  # warm-up
    row = Row(f"{context_tokens}-token context", 0, 0, 0.0, [])
    for i in range(requests):
        here = prefix + typed[: i % (len(typed) + 1)]
        timed_infill(model, row, here, rest[len(here) - len(prefix):], "bench.py", options)
    return row


def generation_rows(model: LoadedModel, prompt: str, lengths: list[int]) -> list[Row]:
    rows = []
    for length in lengths:
        if length >= model.config.max_seq_len:
            continue
        for name, opts in (("1 token/pass", {"tokens_per_step": 1, "threshold": None}), ("threshold 0.9", {"threshold": 0.9})):
            options = DecodeOptions(max_tokens=length, initial_tokens=length, block_size=32, **opts)
            _sync(model)
            start = time.perf_counter()
            result = generate(model, prompt, options)
            _sync(model)
            wall = time.perf_counter() - start
            rows.append(Row(f"generate {length}: {name}", result.stats.tokens, result.stats.forward_passes, wall, [wall * 1000]))
    return rows


def against_targets(rows: list[Row]) -> dict | None:
    """The fastest cached threshold schedule against one token per pass (rows[0], as SCHEDULES
    orders them); None when no threshold schedule ran (an anchored model's rows)."""
    base = rows[0]
    thresholds = [r for r in rows if r.name.startswith("threshold") and "no cache" not in r.name]
    if not thresholds:
        return None
    best = max(thresholds, key=lambda r: r.tokens_per_s)
    speedup = best.tokens_per_s / base.tokens_per_s if base.tokens_per_s else 0.0
    loss = (base.exact or 0.0) - (best.exact or 0.0)
    return {"best": best.name, "speedup": round(speedup, 2), "exact_loss_points": round(loss, 1),
            "tokens_per_forward": round(best.tokens_per_forward, 3),
            "met": speedup >= SPEEDUP_TARGET and loss <= EXACT_LOSS_TARGET}


def targets_line(target: dict) -> str:
    return (f"{target['best']}: {target['speedup']:.2f}x the tokens/s of 1 token/pass, {target['exact_loss_points']:.1f} "
            f"points of exact match lost (target >= {SPEEDUP_TARGET:g}x, <= {EXACT_LOSS_TARGET:g}): {met_word(target['met'])}")


def complete_line(p50_ms: float, p95_ms: float, context_tokens: int, target_ms: float) -> str:
    return (f"complete, warm single-line, {context_tokens}-token context: p50 {p50_ms:.1f} ms, p95 {p95_ms:.1f} ms "
            f"(target < {target_ms:g} ms): {met_word(p50_ms < target_ms)}")


def format_rows(title: str, rows: list[Row]) -> str:
    lines = [title, f"{'schedule':<28} {'tok/s':>8} {'passes':>7} {'tok/pass':>8} {'p50 ms':>8} {'p90 ms':>8} {'exact %':>8}"]
    for r in rows:
        exact = f"{r.exact:8.1f}" if r.exact is not None else f"{'':>8}"
        lines.append(f"{r.name:<28} {r.tokens_per_s:8.1f} {r.passes:7d} {r.tokens_per_forward:8.2f} "
                     f"{r.percentile(0.5):8.1f} {r.percentile(0.9):8.1f} {exact}")
    return "\n".join(lines)


def step_7b_table(device: torch.device) -> str:
    """The 7B-class denoising step against the memory-bandwidth floor, as `dcode bench gpu` measures it."""
    from dcode.bench.common import BenchContext
    from dcode.bench.scale import step_7b_section

    _, lines = step_7b_section(BenchContext(device, quick=False, deadline=math.inf))
    return "\n".join(["7B-shape forward step against the memory-bandwidth floor (random weights)", *lines])


def run_speed_bench(model: LoadedModel, limit: int, seed: int = 0) -> str:
    from dcode.eval.tasks import default_functional_dir, functional_tasks, heldout_files, heldout_spec, holdout_tasks

    try:
        tasks = holdout_tasks(heldout_files(heldout_spec(None, model.path)), limit, limit, seed=seed)
    except InputError:  # a model without a recorded held-out split: use the functional tasks
        tasks = []
    if not tasks and default_functional_dir() is not None:
        tasks = functional_tasks(default_functional_dir(), n=2 * limit, seed=seed)
    device = torch.cuda.get_device_name() if model.device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    parts = [f"model {model.name} · {device} · {str(model.dtype).removeprefix('torch.')} · {len(tasks)} held-out holes"]
    rows = infill_rows(model, tasks, max_tokens=128) if tasks else []
    if rows:
        parts.append(format_rows("infill", rows))
        target = against_targets(rows)
        if target is not None:
            parts.append("fastest threshold schedule, " + targets_line(target))
    parts.append(format_rows("generation", generation_rows(model, "import os\n\n\ndef main():\n", [32, 128])))
    # 512 tokens of context, or what fits beside a 16-token hole in a smaller model's window.
    window = min(512, model.config.max_seq_len - 32)
    source = max((t.full_prefix + t.expected + t.full_suffix for t in tasks), key=len, default="")
    if len(model.tokenizer.encode(source)) >= window:
        row = complete_row(model, source, 10, window)
        parts.append(format_rows("complete: warm single-line requests while typing", [row]) + "\n"
                     + complete_line(row.percentile(0.5), row.percentile(0.95), window, complete_target_ms(model)))
    else:
        parts.append(f"complete: skipped (no held-out file of {window} tokens)")
    if model.device.type == "cuda":
        parts.append(step_7b_table(model.device))
    else:
        parts.append("7B-shape forward step: skipped (needs a CUDA GPU)")
    return "\n\n".join(parts)
