"""Score infilling predictions: exact match, character similarity, parse rate, functional pass
rate, and decoding speed; print a table and write JSON.

A *predictor* maps a task to a `Prediction`; `model_predictor` wraps the diffusion engine, and
tests plug in an oracle (the expected text) or an empty answer to pin the metrics' ends.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dcode.eval.tasks import InfillTask, compiles

FUNCTIONAL_TIMEOUT_S = 10.0
KINDS = ("single", "multi", "functional", "humaneval", "humaneval-multi")
TESTED = ("functional", "humaneval", "humaneval-multi")  # kinds scored by running tests


@dataclass
class Prediction:
    text: str
    forward_passes: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    endings: list[dict] | None = None  # anchored decoding: every scored candidate (Ending.as_dict)


Predictor = Callable[[InfillTask], Prediction]


@dataclass
class TaskResult:
    id: str
    kind: str
    path: str
    expected: str
    predicted: str
    exact: bool
    similarity: float
    parses: bool
    passed: bool | None  # functional tasks only
    forward_passes: int
    tokens: int
    wall_s: float
    endings: list[dict] | None = None  # the candidates the ending was chosen from, with their scores


@dataclass
class Summary:
    kind: str
    n: int
    exact: float
    similarity: float
    parses: float
    passed: float | None
    forward_passes: float  # mean per task
    tokens_per_forward: float  # over all tasks of the kind
    wall_s: float  # total


@dataclass
class Report:
    model: str
    settings: dict
    summaries: list[Summary]
    results: list[TaskResult] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "settings": self.settings,
                           "summary": [asdict(s) for s in self.summaries],
                           "results": [asdict(r) for r in self.results]}, indent=1) + "\n"

    def save(self, path: Path) -> None:
        """Write the report to `path` atomically (a reader never sees half a file)."""
        from dcode.edit.files import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, self.to_json().encode("utf-8"))

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        return cls(data["model"], data["settings"], [Summary(**s) for s in data["summary"]],
                   [TaskResult(**r) for r in data["results"]])


def merge_shards(shards: Sequence[Report]) -> Report:
    """One report of the shards of a run (`dcode eval --shard I/N` for I = 0..N-1, in that
    order): the holes back in their order, the figures summarized again over all of them."""
    count = len(shards)
    results: list[TaskResult] = []
    for j in range(max(len(s.results) for s in shards)):
        results += [s.results[j] for s in shards if j < len(s.results)]
    settings = {**shards[0].settings, "shard": None, "shards": count,
                "complete": all(s.settings.get("complete", True) for s in shards),
                "total_wall_s": max(s.settings.get("total_wall_s", 0.0) for s in shards)}
    return Report(shards[0].model, settings, summarize(results), results)


# ---------------------------------------------------------------------------------------- metrics


def exact_match(predicted: str, expected: str) -> bool:
    """Equal once surrounding whitespace (and trailing whitespace of each line) is ignored."""
    return _norm(predicted) == _norm(expected)


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def char_similarity(predicted: str, expected: str) -> float:
    """difflib ratio in [0, 1] of the stripped texts (1 = identical, 0 = nothing in common)."""
    a, b = _norm(predicted), _norm(expected)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def filled_source(task: InfillTask, predicted: str) -> str:
    """The whole file with the hole filled. The hole spans whole lines, so a completion that
    forgot its final newline gets one rather than being glued to the next line."""
    if task.expected.endswith("\n") and predicted and not predicted.endswith("\n"):
        predicted += "\n"
    return task.full_prefix + predicted + task.full_suffix


def run_tests(task: InfillTask, predicted: str, timeout_s: float = FUNCTIONAL_TIMEOUT_S) -> bool:
    """Run the filled module followed by its tests in a fresh interpreter; pass = exit status 0."""
    source = filled_source(task, predicted) + "\n" + task.tests
    with tempfile.TemporaryDirectory(prefix="dcode-eval-") as tmp:
        script = Path(tmp) / "task.py"
        script.write_text(source, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        try:
            proc = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp, env=env, timeout=timeout_s,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False
    return proc.returncode == 0


def score(task: InfillTask, pred: Prediction, timeout_s: float = FUNCTIONAL_TIMEOUT_S) -> TaskResult:
    passed = run_tests(task, pred.text, timeout_s) if task.kind in TESTED else None
    return TaskResult(
        id=task.id, kind=task.kind, path=task.path, expected=task.expected, predicted=pred.text,
        exact=exact_match(pred.text, task.expected), similarity=round(char_similarity(pred.text, task.expected), 4),
        parses=compiles(filled_source(task, pred.text), task.path), passed=passed,
        forward_passes=pred.forward_passes, tokens=pred.tokens, wall_s=round(pred.wall_s, 4), endings=pred.endings,
    )


def summarize(results: Sequence[TaskResult]) -> list[Summary]:
    out: list[Summary] = []
    for kind in KINDS:
        rs = [r for r in results if r.kind == kind]
        if not rs:
            continue
        n = len(rs)
        passes = sum(r.forward_passes for r in rs)
        out.append(Summary(
            kind=kind, n=n,
            exact=sum(r.exact for r in rs) / n,
            similarity=sum(r.similarity for r in rs) / n,
            parses=sum(r.parses for r in rs) / n,
            passed=sum(bool(r.passed) for r in rs) / n if kind in TESTED else None,
            forward_passes=passes / n,
            tokens_per_forward=sum(r.tokens for r in rs) / passes if passes else 0.0,
            wall_s=sum(r.wall_s for r in rs),
        ))
    return out


def evaluate(
    tasks: Iterable[InfillTask],
    predict: Predictor,
    on_result: Callable[[TaskResult], None] | None = None,
    timeout_s: float = FUNCTIONAL_TIMEOUT_S,
) -> list[TaskResult]:
    results = []
    for task in tasks:
        result = score(task, predict(task), timeout_s)
        results.append(result)
        if on_result:
            on_result(result)
    return results


# ----------------------------------------------------------------------------------- predictors


def model_predictor(model, options_for: Callable[[InfillTask], object]) -> Predictor:
    """Fill each hole with the diffusion engine (`dcode.diffusion.engine.infill`)."""
    from dcode.diffusion.engine import infill

    def predict(task: InfillTask) -> Prediction:
        start = time.perf_counter()
        completion = infill(model, task.prefix, task.suffix, path=task.path, options=options_for(task))
        wall = time.perf_counter() - start
        st = completion.stats
        return Prediction(completion.text, st.forward_passes, st.tokens, wall,
                          [e.as_dict() for e in completion.endings] or None)

    return predict


class Rechooser:
    """A predictor that chooses each hole's answer again from the candidates a run recorded:
    those of its first `best_of` branches (the greedy one first, as the decoder grows them), by
    ending rule `rule` (dcode.diffusion.endings; None for either: the default for the hole's
    shape). Branches grow independently and the rule only picks among their endings, so this is
    what decoding with those options answers, except where the run left none of those branches'
    candidates: a branch given up beside a likelier one, or passed over because another branch
    wrote the suffix's first lines. Such holes keep the run's answer and are listed in `kept`
    (decode them to score them exactly). Passes, tokens and time are the run's."""

    def __init__(self, report: Report, rule: str | None = None, best_of: int | None = None) -> None:
        from dcode.diffusion.endings import Ending

        self.by_id = {r.id: r for r in report.results}
        # Read once, here: a candidate with missing or unknown fields raises TypeError at once.
        self.endings = {r.id: [Ending(**e) for e in r.endings or []] for r in report.results}
        self.rule, self.best_of = rule, best_of
        self.kept: list[str] = []

    def __call__(self, task: InfillTask) -> Prediction:
        from dcode.diffusion.endings import best_ending, default_best_of, default_rule
        from dcode.errors import InputError

        if task.id not in self.by_id:
            raise InputError(f"{task.id}: not in the report being chosen again (use the --tasks file of its run)")
        r = self.by_id[task.id]
        branches = self.best_of or default_best_of(task.one_line)
        endings = [e for e in self.endings[task.id] if e.branch < branches]
        if not endings:
            self.kept.append(task.id)
            return Prediction(r.predicted, r.forward_passes, r.tokens, r.wall_s, r.endings)
        text = best_ending(endings, self.rule or default_rule(task.one_line)).text
        return Prediction(text, r.forward_passes, r.tokens, r.wall_s, r.endings)


def ltr_predictor(model, max_tokens_for: Callable[[InfillTask], int]) -> Predictor:
    """The base read left to right with token healing: only the prefix, greedy, a one-line hole
    ends at its newline, a block where the indentation drops (anchored decoding with one
    candidate and no suffix)."""
    from dcode.diffusion.anchored import anchored_infill
    from dcode.diffusion.sampler import DecodeOptions

    def predict(task: InfillTask) -> Prediction:
        start = time.perf_counter()
        options = DecodeOptions(max_tokens=max_tokens_for(task), best_of=1, max_lines=1 if task.one_line else None)
        completion = anchored_infill(model, task.prefix, "", options=options, headed=False)
        st = completion.stats
        return Prediction(completion.text, st.forward_passes, st.tokens, time.perf_counter() - start)

    return predict


def oracle_predictor(task: InfillTask) -> Prediction:
    return Prediction(task.expected)


def empty_predictor(task: InfillTask) -> Prediction:
    return Prediction("")


# ------------------------------------------------------------------------------------------ table


def render_table(summaries: Sequence[Summary]):
    """A rich Table of the summaries (one row per task kind)."""
    from rich.table import Table

    table = Table(title="dcode infilling evaluation")
    for col in ("holes", "n", "exact", "char sim", "parses", "tests pass", "fwd/hole", "tok/fwd", "wall s"):
        table.add_column(col, justify="right" if col != "holes" else "left")
    for s in summaries:
        table.add_row(s.kind, str(s.n), f"{s.exact:.1%}", f"{s.similarity:.3f}", f"{s.parses:.1%}",
                      "-" if s.passed is None else f"{s.passed:.1%}", f"{s.forward_passes:.1f}",
                      f"{s.tokens_per_forward:.2f}", f"{s.wall_s:.1f}")
    return table


def markdown_table(summaries: Sequence[Summary]) -> str:
    rows = ["| holes | n | exact match | char similarity | parses | tests pass | forward passes / hole | tokens / forward | wall s (total) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summaries:
        rows.append(f"| {s.kind} | {s.n} | {s.exact:.1%} | {s.similarity:.3f} | {s.parses:.1%} | "
                    f"{'-' if s.passed is None else f'{s.passed:.1%}'} | {s.forward_passes:.1f} | "
                    f"{s.tokens_per_forward:.2f} | {s.wall_s:.1f} |")
    return "\n".join(rows) + "\n"
