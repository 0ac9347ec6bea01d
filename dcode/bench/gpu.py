"""`dcode bench gpu`: one command that checks dcode on a CUDA device and measures it.

Five sections run in order: correctness (fixture and shipped-model logits against CPU fp32, bf16
agreement), end to end (`dcode fill/write/refine/complete` as subprocesses, and the out-of-memory
error), speed (schedules of the shipped models, torch.compile / CUDA graphs at bucketed shapes),
the 7B-class denoising step against the memory-bandwidth floor, and training throughput / MFU.

Each section has a status: `ok` (it ran; every check passed and every target it could measure
was met), `missed` (a timing target was not met; its line says which), `fail` (a check failed),
`error` (the section raised) or `skipped` (with the reason).

A device is lent for minutes at a time, so: each section is guarded (a failure is recorded with
its one-line error and the rest still runs), a time budget skips and records what no longer fits,
and the JSON is rewritten after every section, so a run cut short still leaves its results.
`--quick` runs every section at reduced sizes; the test suite runs it on CPU so it cannot rot.
"""

from __future__ import annotations

import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from dcode.bench.checks import correctness_section, end_to_end_section
from dcode.bench.common import BenchContext, Section, one_line
from dcode.bench.scale import step_7b_section, training_section
from dcode.bench.speed import speed_section
from dcode.errors import InputError, ModelError
from dcode.model.device import resolve_device

DEFAULT_MINUTES = 8.0

# Seconds each section needs at least; one that would start with less left is skipped, not cut.
MIN_SECONDS = {"correctness": 20, "end_to_end": 40, "speed": 45, "step_7b": 30, "training": 30}


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sections() -> list[tuple[str, Section]]:
    return [("correctness", correctness_section), ("end_to_end", end_to_end_section), ("speed", speed_section),
            ("step_7b", step_7b_section), ("training", training_section)]


def run_section(name: str, fn: Section, ctx: BenchContext) -> tuple[dict, list[str]]:
    """Run one section; a failure or a spent budget becomes a recorded status, never an abort."""
    if ctx.left() < MIN_SECONDS.get(name, 0) * (0.1 if ctx.quick else 1):
        reason = f"time budget ran out ({max(0.0, ctx.left()):.0f} s left)"
        return {"status": "skipped", "reason": reason, "seconds": 0.0}, [f"  skipped: {reason}"]
    start = time.perf_counter()
    try:
        result, lines = fn(ctx)
    except Exception as err:  # a bench section must not take the other sections down with it
        result, lines = {"status": "error", "error": one_line(err)}, [f"  error: {one_line(err)}"]
    finally:
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result, lines


def run_gpu_bench(device: str, out: Path, quick: bool, minutes: float = DEFAULT_MINUTES,
                  only: list[tuple[str, Section]] | None = None) -> str:
    """Run the sections (all, or `only`) on `device` and return the table; `out` gets the JSON
    after every section."""
    dev = resolve_device(device)
    ctx = BenchContext(dev, quick, time.perf_counter() + minutes * 60)
    report: dict[str, Any] = {
        "device": device_label(dev), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "quick": quick, "minutes": minutes, "sections": {},
    }
    lines = [f"dcode bench gpu · {report['device']} · {report['date']} · torch {torch.__version__}"
             + (" · quick" if quick else "")]
    write_json(out, report)  # a path that cannot be written fails now, not after minutes of device time
    for name, fn in only if only is not None else sections():
        result, table = run_section(name, fn, ctx)
        ctx.results[name] = report["sections"][name] = result
        lines += ["", f"[{name}] {result['status']} ({result['seconds']:.1f} s)", *table]
        write_json(out, report)
    return "\n".join(lines)


def write_json(out: Path, report: dict) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    except OSError as err:
        raise InputError(f"{out}: cannot write the results ({err.strerror or err})") from None


def run_bench_gpu(device: str | None, out: Path, quick: bool, minutes: float) -> None:
    """The CLI's entry: CUDA unless a device is named; no GPU and none named is a one-line error."""
    if device is None and not torch.cuda.is_available():
        raise ModelError("dcode bench gpu needs a CUDA GPU and none is available (pass --device cpu for a CPU run)")
    print(run_gpu_bench(device or "cuda", out, quick, minutes), flush=True)
    print(f"results: {out}", flush=True)
