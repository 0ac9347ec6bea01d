"""`dcode bench speed` on a tiny model: every schedule runs, and the targets read as met or missed
by the figures printed beside them."""

from __future__ import annotations

import dataclasses
import re

from dcode.bench.decoding import (ANCHORED_SCHEDULES, COMPLETE_P50_CPU_TARGET_MS, EXACT_LOSS_TARGET, SCHEDULES,
                                  SPEEDUP_TARGET, run_speed_bench, schedules_for)


def test_the_speed_bench_says_whether_each_target_is_met(emitting):
    # A model that fills every hole with one short line and then pads: quick at every schedule.
    table = run_speed_bench(emitting("    return 1\n"), limit=1)
    assert all(f"\n{name:<28} " in table for name, _ in SCHEDULES)
    line = next(line for line in table.splitlines() if line.startswith("fastest threshold schedule, "))
    figures = re.search(r": ([\d.]+)x the tokens/s of 1 token/pass, (-?[\d.]+) points of exact match lost "
                        rf"\(target >= {SPEEDUP_TARGET:g}x, <= {EXACT_LOSS_TARGET:g}\): (met|NOT met)$", line)
    assert figures, line
    speedup, loss, verdict = float(figures[1]), float(figures[2]), figures[3]
    assert verdict == ("met" if speedup >= SPEEDUP_TARGET and loss <= EXACT_LOSS_TARGET else "NOT met")
    complete = [line for line in table.splitlines() if line.startswith("complete")]
    assert complete == ["complete: skipped (no held-out file of 480 tokens)"] or \
        complete[-1].endswith(f"(target < {COMPLETE_P50_CPU_TARGET_MS:g} ms): met") or complete[-1].endswith(": NOT met")
    assert table.endswith("7B-shape forward step: skipped (needs a CUDA GPU)")


def test_an_anchored_model_is_timed_by_its_candidates_not_by_diffusion_schedules(emitting):
    # The anchored decoder ignores thresholds and steps: timing it under each would print the
    # same row eight times (and take eight times as long).
    model = emitting("    return 1\n")
    assert schedules_for(model) == SCHEDULES
    model = dataclasses.replace(model, config=dataclasses.replace(model.config, decoder="anchored"))
    assert [name for name, _ in schedules_for(model)] == [name for name, _ in ANCHORED_SCHEDULES]
