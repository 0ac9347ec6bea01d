"""`dcode.workflow.propose` with scripted models: what the model writes is known, so these
assertions are about verification (scope, parsing, retries), not model quality."""

from __future__ import annotations

import subprocess
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
    assert proposal.problem.startswith("does not parse where it was filled (") and not proposal.parses


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


# --------------------------------------------------------------------------------------------
# The same checks everywhere a proposal is made (issue 25, items 1-4 and 15)
# --------------------------------------------------------------------------------------------


# Tab-indented: the tiny tokenizer splits "    #" into "   ", " ", "#", and a fill's second slot may
# not be blank, so a scripted model could not write a space-indented comment.
TAB_STUB = 'def mean(values):\n\t"""Mean."""\n\t# dcode: fill\n'
TAB_BODY = "\treturn sum(values) / len(values)\n"
# As long as TAB_BODY or longer in tokens: a scripted model refines a draft into text no longer than it.
TAB_COMMENT = "\t# the mean of the values, summed and divided\n"


@pytest.fixture
def tab_file(tmp_path: Path, cache_home: Path) -> Path:
    path = tmp_path / "stats.py"
    path.write_text(TAB_STUB, encoding="utf-8")
    return path


def test_a_marker_left_as_a_comment_is_not_verified_after_every_candidate(tab_file, emitting):
    model = emitting("\t# dcode:\n")  # it parses: only the checks on what was filled catch it
    proposal = final(tab_file, model)
    assert proposal.problem == "leaves a piece of the `dcode: fill` marker ('# dcode:')" and proposal.parses
    assert proposal.notes[-1] == (f"the proposal {proposal.problem} (best of {FILL_ATTEMPTS} candidates); "
                                  "refine it or reject it")
    assert len(model.net.calls) >= FILL_ATTEMPTS


def test_refine_is_judged_by_the_same_checks_with_the_same_notes(tab_file, emitting):
    proposal = final(tab_file, emitting(TAB_BODY))
    assert proposal.problem is None
    settings = Settings(max_tokens=48)
    worse = list(refine(proposal, emitting(TAB_COMMENT), settings, lines=(1, 1)))[-1]
    assert worse.problem == "is only a comment" and worse.parses
    assert worse.notes.count("the proposal is only a comment; refine it or reject it") == 1
    better = list(refine(worse, emitting(TAB_BODY), settings, lines=(1, 1)))[-1]
    assert better.problem is None and not any("refine it or reject it" in note for note in better.notes)


def test_refine_judges_the_filled_region_too(tmp_path, cache_home, emitting):
    path = tmp_path / "pad.py"
    path.write_text("def pad(iterable):\n    return chain(iterable, \n\n\ndef other():\n    return 1\n")
    settings = Settings(max_tokens=48)
    proposal = list(propose(Request(f"{path}:2:28"), emitting("repeat(None))"), settings))[-1]
    assert proposal.problem is None
    refined = list(refine(proposal, emitting(" else)"), settings, lines=(1, 1)))[-1]
    assert refined.fill == " else)"
    assert refined.problem == "does not parse where it was filled (unexpected 'else' at line 2)"
    assert not refined.parses


def test_yes_writes_neither_an_unverified_fill_nor_refine_and_accept_warns(tab_file, emitting, monkeypatch):
    from typer.testing import CliRunner

    from dcode.cli.app import app

    subprocess.run(["git", "init", "-q", str(tab_file.parent)], check=True)
    monkeypatch.chdir(tab_file.parent)
    monkeypatch.delenv("DCODE_MODEL", raising=False)
    models = iter([emitting(TAB_COMMENT), emitting(TAB_BODY), emitting(TAB_BODY), emitting("\t# dcode:\n")])
    monkeypatch.setattr("dcode.cli.session.load", lambda settings: next(models))

    def invoke(*args: str):
        return CliRunner().invoke(app, [*args], catch_exceptions=False)

    done = invoke("fill", "stats.py", "--yes", "--no-live")
    assert done.exit_code == 4 and "the proposal is only a comment; not written" in done.stderr
    assert tab_file.read_text(encoding="utf-8") == TAB_STUB
    assert invoke("refine", "--lines", "3", "--yes").exit_code == 0  # verified: written
    assert tab_file.read_text(encoding="utf-8") == TAB_STUB.replace("\t# dcode: fill\n", TAB_BODY)
    assert invoke("undo").exit_code == 0
    assert invoke("fill", "stats.py", "--no-live").exit_code == 0
    done = invoke("refine", "--lines", "3", "--yes")
    assert done.exit_code == 4 and "the proposal leaves a piece of the `dcode: fill` marker" in done.stderr
    assert tab_file.read_text(encoding="utf-8") == TAB_STUB
    done = invoke("accept")
    assert done.exit_code == 0 and "warning: applied although the proposal leaves a piece" in done.stderr


def test_a_hook_fix_at_the_end_of_a_file_adds_no_blank_line(tmp_path, cache_home, emitting):
    from dcode.hook.filler import HoleFiller
    from dcode.hook.fix import fix_text

    source = 'def mean(values):\n    """Mean."""\n    # dcode: fill\n'
    model = emitting(BODY + "\n\n")
    fix = fix_text(tmp_path / "stats.py", source, HoleFiller(Settings(max_tokens=48), lambda: model), max_attempts=1)
    assert fix.new_text == source.replace("    # dcode: fill\n", BODY)  # one newline at the end, W391-clean


def test_a_file_in_a_pep_263_encoding_is_filled_and_written_in_it(tmp_path, cache_home, emitting):
    from dcode.edit.journal import Journal
    from dcode.edit.proposal import apply_proposal

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    path = tmp_path / "greet.py"
    original = '# -*- coding: latin-1 -*-\ndef greet():\n    """Say olé."""\n    # dcode: fill\n'.encode("latin-1")
    path.write_bytes(original)
    proposal = final(path, emitting("    return 'olé'\n"))
    assert proposal.problem is None
    apply_proposal(proposal, "fill")
    assert path.read_bytes() == original.replace(b"    # dcode: fill\n", "    return 'olé'\n".encode("latin-1"))
    Journal(tmp_path).undo()
    assert path.read_bytes() == original
