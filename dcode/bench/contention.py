"""`dcode bench contention`: a fill on a quiet machine, then the same fill with one core kept busy
by a plain busy loop in another process, as when a build or a test run shares the machine.

Threads are chosen afresh once the loop runs, as a `dcode fill` started then would choose them
(`dcode.model.threads`); the same fill on the quiet run's thread count is timed too, to show what
the choice saves. The target: the busy fill takes no more than twice the quiet one.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from dcode.diffusion.engine import infill
from dcode.diffusion.sampler import DecodeOptions
from dcode.model.loader import LoadedModel
from dcode.model.threads import use_threads

TARGET_RATIO = 2.0
FILL_TOKENS = 64  # the most the hole may grow to: a few lines, seconds per fill on a CPU
SETTLE_S = 1.0  # the busy loop is runnable (and counted) before threads are chosen again
BUSY_LOOP = "while True:\n    pass\n"
PREFIX = '''"""Summary statistics for lists of numbers."""

import math


def mean(values):
    """Return the arithmetic mean of a non-empty list of numbers."""
    if not values:
        raise ValueError("mean of an empty list")
    return sum(values) / len(values)


def variance(values):
    """Return the population variance of a non-empty list of numbers."""
'''
SUFFIX = '''

def stdev(values):
    """Return the population standard deviation of a non-empty list of numbers."""
    return math.sqrt(variance(values))
'''


@dataclass
class Timing:
    label: str
    threads: int
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_fill(model: LoadedModel, options: DecodeOptions, runs: int) -> list[float]:
    """Seconds per fill of the bench's hole, `runs` times."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        infill(model, PREFIX, SUFFIX, path="stats.py", options=options)
        seconds.append(time.perf_counter() - start)
    return seconds


def run_contention_bench(model: LoadedModel, options: DecodeOptions, threads: int | None, runs: int) -> list[Timing]:
    """Quiet; busy with threads chosen again; busy on the quiet run's threads (when they differ)."""
    quiet_threads = use_threads(threads)
    infill(model, PREFIX, SUFFIX, path="stats.py", options=options)  # warm-up: first-call costs are not contention
    timings = [Timing("quiet", quiet_threads, time_fill(model, options, runs))]
    loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE_S)
        busy_threads = use_threads(threads)
        timings.append(Timing("one core busy", busy_threads, time_fill(model, options, runs)))
        if busy_threads != quiet_threads:
            use_threads(quiet_threads)
            timings.append(Timing("one core busy, quiet threads", quiet_threads, time_fill(model, options, runs)))
    finally:
        loop.kill()
        loop.wait()
    return timings


def format_contention(model_name: str, timings: list[Timing]) -> str:
    quiet = timings[0].median
    lines = [f"dcode bench contention: {model_name}, a fill of stats.py::variance (at most {FILL_TOKENS} tokens), "
             f"median of {len(timings[0].seconds)} runs each", f"{'':<30}{'threads':>8}{'median s':>10}{'x quiet':>9}"]
    for t in timings:
        lines.append(f"{t.label:<30}{t.threads:>8}{t.median:>10.2f}{t.median / quiet:>9.2f}")
    ratio = timings[1].median / quiet
    verdict = "met" if ratio <= TARGET_RATIO else "missed"
    lines.append(f"target: one core busy no worse than {TARGET_RATIO:g}x quiet: {ratio:.2f}x, {verdict}")
    return "\n".join(lines)
