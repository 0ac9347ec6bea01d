"""HumanEval single-line holes: one per non-blank solution line, scored by the problem's tests."""

from __future__ import annotations

from dcode.eval.harness import empty_predictor, evaluate, oracle_predictor, summarize
from dcode.eval.humaneval import humaneval_tasks, problem_holes, read_problems

PROBLEM = {
    "task_id": "HumanEval/999", "entry_point": "double",
    "prompt": 'def double(x):\n    """Twice x."""\n',
    "canonical_solution": "    y = x * 2\n\n    return y\n",
    "test": "def check(candidate):\n    assert candidate(3) == 6\n",
}


def test_one_hole_per_non_blank_solution_line():
    tasks = problem_holes(PROBLEM)
    assert [t.expected for t in tasks] == ["    y = x * 2\n", "    return y\n"]
    assert tasks[1].prefix == PROBLEM["prompt"] + "    y = x * 2\n\n" and tasks[1].suffix == ""
    assert tasks[0].id == "HumanEval-999-L1" and "check(double)" in tasks[0].tests


def test_the_tests_decide():
    tasks = problem_holes(PROBLEM)
    right = summarize(evaluate(tasks, oracle_predictor))[0]
    wrong = summarize(evaluate(tasks, empty_predictor))[0]
    assert (right.kind, right.passed, wrong.passed) == ("humaneval", 1.0, 0.0)


def test_the_real_problems_are_read_and_sampled_with_a_fixed_seed():
    problems = read_problems()
    assert len(problems) == 164
    first, again = humaneval_tasks(5, seed=0, problems=problems), humaneval_tasks(5, seed=0, problems=problems)
    assert [t.id for t in first] == [t.id for t in again] and len({t.id for t in first}) == 5
