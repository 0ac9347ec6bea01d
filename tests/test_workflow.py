"""`dcode.workflow.propose` with scripted models: what the model writes is known, so these
assertions are about verification (scope, parsing, retries), not model quality."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcode.edit.proposal import Proposal
from dcode.settings import Settings
from dcode.workflow import FILL_ATTEMPTS, Request, propose, refine

STUB = 'def mean(values):\n    """Mean."""\n    # dcode: fill\n\n\ndef keep():\n    pass\n'
BODY = "    return sum(values) / len(values)\n"


@pytest.fixture
def stats_file(tmp_path: Path, cache_home: Path) -> Path:
    path = tmp_path / "stats.py"
    path.write_text(STUB, encoding="utf-8")
    return path


def final(path: Path, model) -> Proposal:
    items = list(propose(Request(str(path)), model, Settings(max_tokens=48)))
    assert isinstance(items[-1], Proposal)
    return items[-1]


def test_code_past_the_end_of_the_function_is_dropped_with_a_note(stats_file, emitting):
    model = emitting(BODY + "\n\ndef median(values):\n    return sorted(values)[len(values) // 2]\n")
    proposal = final(stats_file, model)
    assert proposal.fill == BODY and proposal.problem is None and proposal.parses
    assert len(proposal.token_ids) == len(model.tokenizer.encode(BODY))
    assert any("past the end of mean" in note for note in proposal.notes)
    assert "median" not in proposal.new_text(STUB)


def test_a_fill_wholly_outside_its_function_is_not_verified(stats_file, emitting):
    model = emitting("x = 1\n")  # parses, but at module level: not the body of `mean`
    proposal = final(stats_file, model)
    assert proposal.problem == "is outside mean" and proposal.parses
    assert proposal.fill == "x = 1\n"  # left whole, so the user sees what the model did
    assert any(f"is outside mean (best of {FILL_ATTEMPTS}" in note for note in proposal.notes)
    assert len(model.net.calls) >= FILL_ATTEMPTS  # every candidate was tried


def test_a_fill_that_does_not_parse_says_so(stats_file, emitting):
    proposal = final(stats_file, emitting("    return (values\n"))
    assert proposal.problem == "does not parse" and not proposal.parses


def test_a_good_body_is_verified_at_once(stats_file, emitting):
    model = emitting(BODY)
    proposal = final(stats_file, model)
    assert proposal.problem is None and proposal.new_text(STUB) == STUB.replace("    # dcode: fill\n", BODY)
    assert not any("past the end" in note for note in proposal.notes)


def test_refine_keeps_the_fill_inside_its_function(stats_file, emitting):
    proposal = final(stats_file, emitting(BODY))
    escaping = emitting("    return 0\n\n\ndef extra():\n    pass\n")
    items = list(refine(proposal, escaping, Settings(max_tokens=48), lines=(1, 1)))
    refined = items[-1]
    assert isinstance(refined, Proposal)
    assert refined.fill == "    return 0\n" and refined.problem is None and refined.parses
    assert any("past the end of mean" in note for note in refined.notes)
    assert not any("past the end" in note for note in proposal.notes)  # the earlier proposal is unchanged


def test_an_instruction_reaches_a_base_model_as_a_comment_above_the_hole(stats_file, emitting):
    canvases: list = []
    model = emitting(BODY, canvases)
    items = list(propose(Request(str(stats_file), "fill", "use the built-in sum"), model, Settings(max_tokens=48)))
    proposal = items[-1]
    seen = model.tokenizer.decode(canvases[0].tolist())
    assert '    """Mean."""\n    # use the built-in sum\n' in seen  # just above the hole, at its indent
    assert proposal.instruction == "use the built-in sum"
    assert proposal.new_text(STUB) == STUB.replace("    # dcode: fill\n", BODY)  # the comment is not written


def test_a_marker_fill_keeps_the_markers_own_indentation(tmp_path, cache_home, emitting):
    source = "package main\n\nfunc double(x int) int {\n\t// dcode: fill\n}\n"
    path = tmp_path / "double.go"
    path.write_text(source, encoding="utf-8")
    model = emitting("  x = 9\n  if x {\n    x = 1\n  }\n  return x\n")  # the model's own indentation
    proposal = final(path, model)
    # The fill moves to the marker's tab; deeper lines keep their depth below it.
    assert proposal.fill == "\tx = 9\n\tif x {\n\t  x = 1\n\t}\n\treturn x\n"
    assert model.tokenizer.decode(proposal.token_ids) == proposal.fill
    assert len(proposal.confidences) == len(proposal.token_ids)
    assert final(path, emitting("return x\n")).fill == "\treturn x\n"  # column 0 too: braces, not indentation, scope Go
    single = final(path, emitting("  return x * 2\n"))
    items = list(refine(single, emitting("  return x + x\n"), Settings(max_tokens=48), lines=(1, 1)))
    assert items[-1].fill == "\treturn x + x\n"
