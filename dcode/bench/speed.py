"""`dcode bench gpu` speed section: the shipped models' decoding schedules and compiled forwards.

The schedule rows come from dcode.bench.decoding (`infill_rows`, the same runs as `dcode bench
speed`), on single-line holes and on whole-function holes, plus a warm single-line `complete`.
The compiled rows time one denoising forward at bucketed active-canvas sizes with the context in
the KV cache: eager, torch.compile without CUDA graphs, and with them ("reduce-overhead"). The
sampler's canvas changes length as it decodes, so compiled decoding needs padded buckets; these
rows say what the buckets would buy before the sampler is changed to use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from dcode.bench.checks import SHIPPED, load_shipped
from dcode.bench.common import BenchContext, one_line, target_status, time_ms
from dcode.bench.decoding import (
    Row,
    against_targets,
    complete_line,
    complete_row,
    complete_target_ms,
    infill_rows,
    targets_line,
)
from dcode.model.loader import LoadedModel

BUCKETS = (32, 64, 128, 256)
# "default" fuses without CUDA graphs; "reduce-overhead" adds them (one graph per bucket). Not
# max-autotune: its matmul search takes minutes per shape, more than the whole budget allows.
COMPILE_MODES = ("default", "reduce-overhead")


def row_dict(row: Row) -> dict:
    return {"name": row.name, "tokens": row.tokens, "passes": row.passes, "wall_s": round(row.wall_s, 4),
            "tokens_per_s": round(row.tokens_per_s, 1), "tokens_per_forward": round(row.tokens_per_forward, 3),
            "p50_ms": round(row.percentile(0.5), 2), "p95_ms": round(row.percentile(0.95), 2), "exact": row.exact}


def holes(model: LoadedModel, n: int) -> dict[str, list]:
    """Held-out single-line holes and whole-function holes (the functional tasks' bodies, else the
    held-out multi-line holes)."""
    from dcode.errors import InputError
    from dcode.eval.tasks import default_functional_dir, functional_tasks, heldout_files, heldout_spec, holdout_tasks

    try:
        heldout = holdout_tasks(heldout_files(heldout_spec(None, model.path)), n, n)
    except InputError:  # a model without a recorded held-out split
        heldout = []
    functional = default_functional_dir()
    bodies = functional_tasks(functional, n=n) if functional is not None else []
    return {"single-line": [t for t in heldout if t.kind == "single"],
            "whole-function": bodies or [t for t in heldout if t.kind == "multi"]}


def forward_at(model: LoadedModel, active: int, context: int) -> Callable[[torch.nn.Module], object]:
    """One denoising forward of `active` masked positions after `context` cached ones."""
    dev, cfg = model.device, model.config
    ids = torch.randint(3, cfg.vocab_size, (1, context), device=dev)
    _, cache = model.net(ids, return_cache=True)
    tokens = torch.full((1, active), cfg.mask_id, device=dev)
    positions = torch.arange(context, context + active, device=dev)
    return lambda net: net(tokens, positions=positions, cache=cache)


def compiled_rows(model: LoadedModel, ctx: BenchContext) -> dict:
    """ms per forward per bucket: eager, and each compile mode (with its compile time apart)."""
    if ctx.device.type != "cuda":
        return {"skipped": "torch.compile / CUDA graphs are timed on CUDA only"}
    buckets = [b for b in BUCKETS if b + 256 <= model.config.max_seq_len]
    out: dict = {"buckets": buckets, "context": 256, "eager_ms": {}, "modes": {}}
    with torch.inference_mode():
        calls = {b: forward_at(model, b, 256) for b in buckets}
        for b in buckets:
            out["eager_ms"][b] = round(time_ms(lambda: calls[b](model.net), ctx, 20), 3)
        for mode in COMPILE_MODES:
            if ctx.left() < 60:
                out["modes"][mode] = {"skipped": "time budget"}
                continue
            torch._dynamo.reset()
            net = torch.compile(model.net, mode=mode, dynamic=False)
            try:
                start = time.perf_counter()
                for b in buckets:  # one graph per bucket: the compile cost a server pays once
                    calls[b](net)
                ctx.sync()
                compile_s = time.perf_counter() - start
                out["modes"][mode] = {"compile_s": round(compile_s, 1),
                                      "ms": {b: round(time_ms(lambda: calls[b](net), ctx, 20), 3) for b in buckets}}
            except Exception as err:  # a compiler failure is a finding, not the end of the section
                out["modes"][mode] = {"error": one_line(err)}
        torch._dynamo.reset()
    return out


def model_speed(model: LoadedModel, ctx: BenchContext) -> dict:
    n, quick = (1, True) if ctx.quick else (10, False)
    result: dict = {"dtype": str(model.dtype).removeprefix("torch."), "holes": {}}
    by_kind = holes(model, n)
    for kind, tasks in by_kind.items():
        if not tasks:
            result["holes"][kind] = {"skipped": "no held-out holes of this kind"}
            continue
        rows = infill_rows(model, tasks, max_tokens=(16 if quick else 32) if kind == "single-line" else (24 if quick else 128))
        result["holes"][kind] = {"n": len(tasks), "rows": [row_dict(r) for r in rows]}
        target = against_targets(rows)
        if target is not None:
            result["holes"][kind]["target"] = target
    window = min(128 if quick else 512, model.config.max_seq_len - 32)
    source = max((t.full_prefix + t.expected + t.full_suffix for t in by_kind["single-line"]), key=len, default="")
    if len(model.tokenizer.encode(source)) >= window:
        row = complete_row(model, source, 2 if quick else 20, window)
        target = complete_target_ms(model)
        result["complete"] = row_dict(row) | {"context_tokens": window, "target_ms": target,
                                              "met": row.percentile(0.5) < target}
    else:
        result["complete"] = {"skipped": f"no held-out file of {window} tokens"}
    result["compiled"] = compiled_rows(model, ctx)
    return result


def speed_lines(name: str, result: dict) -> list[str]:
    lines = [f"  {name} ({result['dtype']})",
             f"    {'holes':<15} {'schedule':<24} {'tok/s':>8} {'passes':>6} {'tok/fwd':>7} {'p50 ms':>8} {'p95 ms':>8} {'exact%':>6}"]
    for kind, part in result["holes"].items():
        if "skipped" in part:
            lines.append(f"    {kind:<15} skipped: {part['skipped']}")
            continue
        for r in part["rows"]:
            exact = f"{r['exact']:6.1f}" if r["exact"] is not None else ""
            lines.append(f"    {kind:<15} {r['name']:<24} {r['tokens_per_s']:8.1f} {r['passes']:6d} "
                         f"{r['tokens_per_forward']:7.2f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {exact}")
        if "target" in part:
            lines.append(f"    {kind:<15} {targets_line(part['target'])}")
    c = result["complete"]
    lines.append(f"    complete: skipped: {c['skipped']}" if "skipped" in c else
                 f"    {complete_line(c['p50_ms'], c['p95_ms'], c['context_tokens'], c['target_ms'])}")
    lines += compiled_lines(result["compiled"])
    return lines


def compiled_lines(comp: dict) -> list[str]:
    if "skipped" in comp:
        return [f"    compiled forward: skipped: {comp['skipped']}"]
    lines = [f"    forward ms, {comp['context']} cached + bucket active: "
             + " ".join(f"{b:>7}" for b in comp["buckets"]),
             f"    {'eager':<38}" + " ".join(f"{comp['eager_ms'][b]:7.3f}" for b in comp["buckets"])]
    for mode, m in comp["modes"].items():
        if "ms" in m:
            lines.append(f"    {mode + ' (compile ' + str(m['compile_s']) + ' s)':<38}"
                         + " ".join(f"{m['ms'][b]:7.3f}" for b in comp["buckets"]))
        else:
            lines.append(f"    {mode}: {m.get('skipped') or m.get('error')}")
    return lines


def speed_section(ctx: BenchContext) -> tuple[dict, list[str]]:
    models: dict[str, dict] = {}
    lines: list[str] = []
    for name in SHIPPED[:1] if ctx.quick else SHIPPED:
        model = load_shipped(name, ctx.device)
        if isinstance(model, str):
            models[name] = {"skipped": model}
            lines.append(f"  {name} skipped: {model}")
            continue
        models[name] = model_speed(model, ctx)
        lines += speed_lines(name, models[name])
        del model
    if ctx.quick:
        models[SHIPPED[1]] = {"skipped": "quick mode: dcode-mini only"}
    return {"status": target_status(targets_met(models)), "models": models}, lines


def targets_met(models: dict[str, dict]) -> list[bool]:
    """Every target the speed runs measured: each kind of hole's speed-up and the warm complete."""
    met = []
    for result in models.values():
        met += [part["target"]["met"] for part in result.get("holes", {}).values() if "target" in part]
        met += [result["complete"]["met"]] if "met" in result.get("complete", {}) else []
    return met
