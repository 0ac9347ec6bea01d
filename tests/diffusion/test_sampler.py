"""The denoising sampler and engine API, driven through scripted and tiny random models."""

from __future__ import annotations

import math

import pytest
import torch

from dcode.diffusion.engine import (
    Completion,
    build_prompt,
    generate,
    generate_stream,
    infill,
    infill_stream,
    refine,
    refine_stream,
)
from dcode.diffusion.sampler import Canvas, DecodeOptions, HoleState, commit_count, denoise
from tests.conftest import FIXTURES


def hole_rule(tokenizer, length: int, token: int = 40, conf: float = 0.99):
    """Predict `token` for the first `length` slots after the hole start, pad after that."""

    def rule(pos, canvas):
        return (token, conf) if pos - rule.hole_start < length else (tokenizer.pad_id, conf)

    rule.hole_start = 0
    return rule


def run_canvas(model, before, hole_len, after, options, **flags):
    tok = model.tokenizer
    canvas = Canvas.build(before, [tok.mask_id] * hole_len, after, tok.mask_id, model.device)
    states = list(denoise(model, canvas, options, **flags))
    return canvas, states


def test_only_masked_positions_change(tiny_model):
    tok = tiny_model.tokenizer
    before, after = tok.encode("def f(x):\n"), tok.encode("    return x\n")
    canvas, states = run_canvas(tiny_model, before, 12, after, DecodeOptions(max_tokens=12), grow=False)
    assert canvas.tokens[: len(before)].tolist() == before
    assert canvas.tokens[len(before) + 12 :].tolist() == after
    assert states[-1].done and states[-1].masked == 0
    assert tok.mask_id not in canvas.tokens.tolist()


def test_pads_are_dropped(scripted):
    rule = None
    model = scripted(lambda p, c: rule(p, c))
    rule = hole_rule(model.tokenizer, length=5)
    prompt = build_prompt(model, "x = ", "\n", path="a.py", reserve=64)
    rule.hole_start = len(prompt.before)
    result = infill(model, "x = ", "\n", path="a.py", options=DecodeOptions(initial_tokens=16, max_tokens=64))
    assert result.token_ids == [40] * 5
    assert model.tokenizer.pad_id not in result.token_ids


def test_hole_grows_until_it_has_room(scripted):
    rule = None
    model = scripted(lambda p, c: rule(p, c))
    rule = hole_rule(model.tokenizer, length=41)
    rule.hole_start = len(build_prompt(model, "a", "b", path="a.py", reserve=128).before)
    result = infill(model, "a", "b", path="a.py", options=DecodeOptions(initial_tokens=8, max_tokens=128))
    assert len(result.token_ids) == 41


def test_growth_is_bounded_by_max_tokens(scripted):
    model = scripted(lambda p, c: (40, 0.99))  # never emits a pad
    result = infill(model, "a", "b", options=DecodeOptions(initial_tokens=8, max_tokens=30))
    assert len(result.token_ids) == 30


def test_end_token_fills_the_rest_with_pads(scripted):
    tok = None
    model = scripted(lambda p, c: (tok.eos_id, 0.99) if p == rule_start[0] + 2 else (40, 0.5))
    tok = model.tokenizer
    rule_start = [len(build_prompt(model, "a", "b", reserve=64).before)]
    # eos at slot 2 is the only confident proposal; once committed the rest becomes pad.
    result = infill(model, "a", "b", options=DecodeOptions(initial_tokens=10, max_tokens=64, threshold=0.9))
    assert result.token_ids == [40, 40]


def test_threshold_commits_many_per_pass(scripted):
    model = scripted(lambda p, c: (40, 0.99))
    _, states = run_canvas(model, [5, 6], 16, [7], DecodeOptions(threshold=0.9), grow=False)
    assert states[-1].stats.forward_passes == 1 and states[-1].stats.tokens == 16


def test_threshold_commits_at_least_one(scripted):
    model = scripted(lambda p, c: (40, 0.3))
    _, states = run_canvas(model, [5, 6], 6, [7], DecodeOptions(threshold=0.9), grow=False)
    assert states[-1].stats.forward_passes == 6


@pytest.mark.parametrize("k", [1, 3, 16])
def test_fixed_schedule(scripted, k):
    model = scripted(lambda p, c: (40, 0.99))
    _, states = run_canvas(model, [5], 16, [7], DecodeOptions(tokens_per_step=k), grow=False)
    assert states[-1].stats.forward_passes == math.ceil(16 / k)
    assert [s.masked for s in states[:-1]] == [max(0, 16 - k * (i + 1)) for i in range(len(states) - 1)]


def slot_rule(confidences: list[float], token: int = 40):
    """A rule for a canvas `[5] + hole + [7]`: hole slot i is proposed `token` with confidences[i]."""
    return lambda p, c: (token, confidences[p - 1]) if 1 <= p <= len(confidences) else (token, 0.5)


def committed_slots(state: HoleState) -> set[int]:
    return {i for i, t in enumerate(state.tokens) if t != state.mask_id}


def test_each_pass_commits_the_most_confident_proposals(scripted):
    """LLaDA's low-confidence remasking: a pass commits the k proposals the model is surest of, so
    the hole fills in order of falling confidence, wherever those slots are."""
    confidences = [0.3, 0.9, 0.5, 0.2, 0.7, 0.8, 0.4, 0.6]
    model = scripted(slot_rule(confidences))
    _, states = run_canvas(model, [5], 8, [7], DecodeOptions(tokens_per_step=2, threshold=None), grow=False)
    by_confidence = sorted(range(8), key=lambda i: -confidences[i])
    assert [committed_slots(s) for s in states[:4]] == [set(by_confidence[: 2 * (n + 1)]) for n in range(4)]
    # Each slot keeps the confidence it was committed with (what refine re-masks by).
    first = states[0]
    assert sorted(round(first.confidences[i], 2) for i in committed_slots(first)) == [0.8, 0.9]


def test_a_threshold_pass_commits_exactly_the_slots_above_it(scripted):
    confidences = [0.95, 0.3, 0.8, 0.5, 0.99, 0.2]
    model = scripted(slot_rule(confidences))
    _, states = run_canvas(model, [5], 6, [7], DecodeOptions(threshold=0.7), grow=False)
    assert committed_slots(states[0]) == {0, 2, 4}
    assert committed_slots(states[1]) == {0, 2, 4, 3}  # then the best of the rest: at least one per pass


def test_a_confidence_exactly_on_the_threshold_is_committed(scripted):
    """`--threshold t` commits every slot at least t confident: one exactly at t is in."""
    model = scripted(slot_rule([0.8, 0.6, 0.8, 0.6, 0.8]))
    # The confidences as the sampler computes them (softmax in float32), read from one full pass.
    _, (seen, *_) = run_canvas(model, [5], 5, [7], DecodeOptions(tokens_per_step=5, threshold=None), grow=False)
    on_threshold = seen.confidences[0]
    assert seen.confidences[2] == seen.confidences[4] == on_threshold > seen.confidences[1]
    _, states = run_canvas(model, [5], 5, [7], DecodeOptions(threshold=on_threshold), grow=False)
    assert committed_slots(states[0]) == {0, 2, 4}


def test_commit_count_rules():
    conf = torch.tensor([0.5, 0.25, 0.75, 0.5])  # exact in float32
    assert commit_count(conf, DecodeOptions(threshold=0.5), 4, 0) == 3  # >=: both 0.5s count
    assert commit_count(conf, DecodeOptions(threshold=0.9), 4, 0) == 1  # none above: still one
    assert commit_count(conf, DecodeOptions(tokens_per_step=3, threshold=None), 4, 0) == 3
    assert commit_count(conf, DecodeOptions(tokens_per_step=9, threshold=None), 4, 0) == 4  # no more than proposed
    # A cap of 4 passes with 2 done and 10 masked: at least ceil(10 / 2) this pass.
    assert commit_count(torch.full((10,), 0.1), DecodeOptions(threshold=0.9, steps=4), 10, 2) == 5


def test_steps_cap(scripted):
    model = scripted(lambda p, c: (40, 0.3))
    _, states = run_canvas(model, [5], 20, [7], DecodeOptions(threshold=0.9, steps=4), grow=False)
    assert states[-1].stats.forward_passes == 4


def test_blocks_fill_left_to_right(scripted):
    # Confidence rises to the right, so without blocks the right end would be filled first.
    model = scripted(lambda p, c: (40, min(0.99, 0.1 + 0.04 * p)))
    _, states = run_canvas(model, [5], 12, [7], DecodeOptions(tokens_per_step=2, block_size=4), grow=False)
    first = states[0].tokens
    assert first[:4].count(40) == 2 and first[4:].count(40) == 0
    third = states[2].tokens
    assert third[:4].count(40) == 4 and third[4:8].count(40) == 2 and third[8:].count(40) == 0


def test_cache_recomputes_only_the_block(scripted):
    model = scripted(lambda p, c: (40, 0.5))
    before, after = list(range(4, 54)), list(range(4, 24))
    run_canvas(model, before, 8, after, DecodeOptions(tokens_per_step=2, use_cache=True), grow=False)
    total = len(before) + 8 + len(after)
    # First pass: the full canvas (building the cache); then only the 8 hole positions.
    assert model.net.calls == [total, 8, 8, 8]


def test_cache_first_pass_is_exact(tiny_model):
    tok = tiny_model.tokenizer
    opts = dict(tokens_per_step=4, max_tokens=4, initial_tokens=4)
    a = infill(tiny_model, "def f(x):\n", "    return x\n", options=DecodeOptions(use_cache=True, **opts))
    b = infill(tiny_model, "def f(x):\n", "    return x\n", options=DecodeOptions(use_cache=False, **opts))
    # One pass commits everything: the cached and uncached samplers see the same logits.
    assert a.stats.forward_passes == 1 and a.token_ids == b.token_ids and a.confidences == pytest.approx(b.confidences)
    assert tok.mask_id not in a.token_ids


def test_same_seed_same_output(tiny_model):
    opts = lambda seed: DecodeOptions(temperature=1.0, top_p=0.9, seed=seed, max_tokens=24)  # noqa: E731
    a = infill(tiny_model, "import os\n", "\n", options=opts(1))
    b = infill(tiny_model, "import os\n", "\n", options=opts(1))
    c = infill(tiny_model, "import os\n", "\n", options=opts(2))
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_refine_touches_only_remasked_positions(tiny_model):
    draft = infill(tiny_model, "def f(x):\n", "\n", options=DecodeOptions(max_tokens=20, initial_tokens=20))
    k = 5
    weakest = sorted(range(len(draft.token_ids)), key=lambda i: draft.confidences[i])[:k]
    states = list(refine_stream(tiny_model, "def f(x):\n", "\n", draft, remask=k,
                                options=DecodeOptions(temperature=1.0, seed=7)))
    first = states[0]
    assert isinstance(first, HoleState)
    # Exactly the k weakest slots were re-masked; the first pass already committed some.
    for i, t in enumerate(first.tokens):
        if i not in weakest:
            assert t == draft.token_ids[i]
    final = states[-1]
    assert isinstance(final, Completion)
    changed = {i for i, (a, b) in enumerate(zip(final.token_ids, draft.token_ids)) if a != b}
    assert changed <= set(weakest)
    assert len(final.confidences) == len(final.token_ids)


def test_refine_lines_regenerates_only_those_lines(scripted, tiny_tokenizer):
    tok = tiny_tokenizer
    lines = ["a = 1\n", "b = 2\n", "c = 3\n"]
    ids = [i for line in lines for i in tok.encode(line)]
    draft = Completion("".join(lines), ids, [0.9] * len(ids), None)
    new_id = tok.encode("x")[0]
    model = scripted(lambda p, c: (new_id, 0.99))
    result = refine(model, "", "", draft, lines=(2, 2), options=DecodeOptions(max_tokens=4))
    text = result.text
    assert text.startswith("a = 1\n") and text.endswith("c = 3\n")
    assert "b = 2" not in text and "x" in text


def test_deadline_returns_a_complete_state(scripted):
    model = scripted(lambda p, c: (40, 0.3))
    result = infill(model, "a", "b", options=DecodeOptions(initial_tokens=20, max_tokens=20, deadline_s=0.0))
    assert result.deadline_hit and len(result.token_ids) == 20
    assert result.stats.forward_passes == 1


def test_generate_and_streaming_stats(tiny_model):
    states = list(generate_stream(tiny_model, "import os\n", DecodeOptions(max_tokens=16, tokens_per_step=4)))
    assert all(isinstance(s, HoleState) for s in states[:-1]) and isinstance(states[-1], Completion)
    final = states[-1]
    assert final.stats.forward_passes == len(states) - 1
    assert final.stats.tokens_per_forward == pytest.approx(final.stats.tokens / final.stats.forward_passes)
    assert final.stats.wall_s > 0
    assert generate(tiny_model, "x", DecodeOptions(max_tokens=8)).stats.tokens >= 1


def test_prompt_is_cut_to_the_context_length(tiny_model):
    tok = tiny_model.tokenizer
    long_prefix = "x = 1\n" * 400
    prompt = build_prompt(tiny_model, long_prefix, "y = 2\n" * 400, path="a.py",
                          context=[("b.py", "z = 3\n" * 50)], reserve=64)
    total = len(prompt.before) + len(prompt.after) + 64
    assert total <= tiny_model.config.max_seq_len
    # the text nearest the hole survives: the prefix's end and the suffix's start
    assert tok.decode(prompt.before).endswith("x = 1\n") and tok.decode(prompt.after).startswith("y = 2\n")
    states = list(infill_stream(tiny_model, long_prefix, "", options=DecodeOptions(max_tokens=64, tokens_per_step=64)))
    assert isinstance(states[-1], Completion)


@pytest.mark.parametrize("use_cache", [True, False])
def test_shifted_model_reads_the_row_left_of_each_slot(use_cache):
    """Dream scores token i with output row i-1; the sampler (cached or not) must read that row."""
    from dcode.model.loader import load_model

    model = load_model(FIXTURES / "dream-tiny", device="cpu")
    mask = model.tokenizer.mask_id
    before, after = [510, 17, 42, 311], [64, 128, 510]
    canvas = Canvas.build(before, [mask] * 5, after, mask, model.device)
    expected_logits = model.logits(canvas.tokens.clone())[0]
    states = list(denoise(model, canvas, DecodeOptions(tokens_per_step=5, use_cache=use_cache), grow=False,
                          end_fills_rest=False))
    hole = states[-1].tokens
    logits = expected_logits[len(before) : len(before) + 5].clone()
    logits[:, mask] = float("-inf")
    assert hole == logits.argmax(-1).tolist()


def test_min_tokens_keeps_the_hole_from_ending_early(scripted):
    tok = None
    model = scripted(lambda p, c: (tok.pad_id, 0.99))  # a model that would rather leave the hole empty
    tok = model.tokenizer
    assert infill(model, "a", "b", options=DecodeOptions(initial_tokens=8, max_tokens=8)).token_ids == []
    result = infill(model, "a", "b", options=DecodeOptions(initial_tokens=8, max_tokens=8, min_tokens=3))
    assert len(result.token_ids) == 3 and tok.pad_id not in result.token_ids
    # after the first slot (indentation allowed) no whitespace-only token either
    blank = set(tok.whitespace_ids)
    assert blank and not set(result.token_ids[1:]) & blank
