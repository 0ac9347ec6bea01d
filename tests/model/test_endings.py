"""The rules that choose a hole's ending among scored candidates (dcode.diffusion.endings)."""

from __future__ import annotations

import pytest

from dcode.diffusion.endings import ENDING_RULES, Ending, best_ending, block_endings, default_rule


def test_joint_charges_a_block_for_its_length_and_mean_does_not():
    short = Ending("    a = 1\n", 0, text_logp=-3.0, suffix_logp=-8.0, text_tokens=4, suffix_tokens=10)
    whole = Ending("    a = 1\n    b = 2\n    return a + b\n", 0, text_logp=-9.0, suffix_logp=-4.0,
                   text_tokens=16, suffix_tokens=10)
    assert best_ending([whole, short], "joint") is short  # -11 against -13
    assert best_ending([short, whole], "mean") is whole  # -0.5 a token against -0.79
    assert best_ending([short, whole], "suffix") is whole  # the suffix follows the whole block better


def test_ties_keep_the_first_candidate_and_unknown_rules_are_refused():
    a, b = Ending("x", 0, -1.0, -1.0, 1, 1), Ending("y", 1, -1.0, -1.0, 1, 1)
    assert all(best_ending([a, b], rule) is a for rule in ENDING_RULES)
    with pytest.raises(ValueError, match="unknown ending rule 'longest'"):
        best_ending([a, b], "longest")
    assert {default_rule(True), default_rule(False)} <= set(ENDING_RULES)


def test_block_endings_cut_at_statements_of_the_block_s_own_indentation():
    text = "    if a:\n        b = 1\n    else:\n        b = 2\n    c = b\n    return c\n\n"
    assert block_endings(text, "") == [text.rstrip("\n") + "\n", text[: text.index("    c")],
                                       text[: text.index("    return")]]
