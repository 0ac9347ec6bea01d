"""What every `dcode bench gpu` section shares: its context, its status, the error line, a timer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class BenchContext:
    """What every section gets: where it runs, how big, the deadline, and the results so far
    (the 7B section projects tokens/s from the speed section's tokens per forward)."""

    device: torch.device
    quick: bool
    deadline: float  # time.perf_counter() value
    results: dict[str, dict] = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# A section returns (JSON-able results, lines for the table).
Section = Callable[[BenchContext], tuple[dict, list[str]]]


def target_status(met: list[bool | None]) -> str:
    """A timing section's status from its targets (None: not measurable here, e.g. MFU without a
    known peak): "missed" when any measured target was missed, else "ok". A section that only
    checks correctness says "fail" instead (checks.verdict)."""
    return "missed" if any(m is False for m in met) else "ok"


def met_word(met: bool | None) -> str:
    """How a table line reads a target: met, NOT met, or not measured."""
    return "no target measured" if met is None else "met" if met else "NOT met"


def one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if text else type(err).__name__


def time_ms(fn: Callable[[], object], ctx: BenchContext, repeat: int) -> float:
    """Milliseconds per call of `fn`, after one untimed call."""
    fn()
    ctx.sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    ctx.sync()
    return (time.perf_counter() - start) * 1000 / repeat
