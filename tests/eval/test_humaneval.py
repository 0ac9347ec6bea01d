"""HumanEval holes, scored by the problem's tests: single-line (one per non-blank solution line) and
multi-line (2-5 consecutive solution lines, one span per problem)."""

from __future__ import annotations

from dcode.eval.harness import empty_predictor, evaluate, oracle_predictor, summarize
from dcode.eval.humaneval import humaneval_multi_tasks, humaneval_tasks, problem_holes, read_problems

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


def test_a_multi_line_hole_spans_two_to_five_solution_lines_starting_and_ending_on_code():
    (task,) = humaneval_multi_tasks(5, problems=[PROBLEM])
    assert task.kind == "humaneval-multi" and task.id == "HumanEval-999-L1-3"
    assert task.expected == PROBLEM["canonical_solution"] and task.prefix == PROBLEM["prompt"] and task.suffix == ""
    right = summarize(evaluate([task], oracle_predictor))[0]
    assert (right.kind, right.passed) == ("humaneval-multi", 1.0)
    assert summarize(evaluate([task], empty_predictor))[0].passed == 0.0
    one_liner = dict(PROBLEM, canonical_solution="    return x * 2\n")
    assert humaneval_multi_tasks(5, problems=[one_liner]) == []


def test_multi_line_holes_are_one_per_problem_with_a_fixed_seed():
    problems = read_problems()
    tasks = humaneval_multi_tasks(100, seed=0, problems=problems)
    assert len(tasks) == 100 and len({t.id.rsplit("-L", 1)[0] for t in tasks}) == 100
    assert [t.id for t in tasks] == [t.id for t in humaneval_multi_tasks(100, seed=0, problems=problems)]
    assert all(2 <= t.expected.count("\n") <= 5 + t.expected.count("\n\n") for t in tasks)
