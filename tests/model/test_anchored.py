"""Anchored decoding on the tiny dcode-small stand-in: the base reads every clean token exactly as
a plain causal forward would, drafts are kept only where the base agrees (so the output is the
base's own), the suffix picks the ending, and the drafter's training sees what inference shows it."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch

from dcode.diffusion.anchored import AnchoredDecoder, Branch, anchored_infill, anchored_prompt, hole_shape
from dcode.diffusion.holes import reaches_suffix, suffix_anchor
from dcode.diffusion.completion import Prompt, last_completion
from dcode.diffusion.endings import Ending
from dcode.diffusion.engine import build_prompt, infill, refine
from dcode.diffusion.sampler import DecodeOptions
from dcode.model.adapted import load_adapted
from dcode.model.lora import AdapterConfig, attach
from dcode.train.drafting import DraftBatch, block_attention, draft_loss, place_cuts

pytestmark = pytest.mark.usefixtures("cache_env")

PREFIX = "def add(a, b):\n    return a"
TOKENS = 24


def plain_causal(model, ids: list[int], allowed_at: int | None = None, allowed=()) -> torch.Tensor:
    """Next-token probabilities after every position, from one causal forward of the base with no
    cache at all: the reference every clean token must match. The decoder never proposes the
    mask, pad or file tokens, and (healing) row `allowed_at` may only take `allowed`."""
    tok = model.tokenizer
    with torch.no_grad():
        raw = model.net(torch.tensor([ids]), causal_until=len(ids))[0].float()
    raw[:, [tok.mask_id, tok.pad_id, tok.file_id]] = float("-inf")
    if allowed_at is not None:
        keep = torch.full((raw.shape[1],), float("-inf"))
        keep[list(allowed)] = 0.0
        raw[allowed_at] += keep
    return torch.softmax(raw, dim=-1)


def committed(monkeypatch) -> list[tuple[int, float]]:
    """Every (token, probability) of the greedy branch when the decoder finishes, from slot 0."""
    seen: list[tuple[int, float]] = []
    original = AnchoredDecoder._finish

    def spy(self, branches):
        seen.extend(zip(branches[0].tokens, branches[0].probs))
        return original(self, branches)

    monkeypatch.setattr(AnchoredDecoder, "_finish", spy)
    return seen


class OracleDrafter:
    """A drafter that guesses the reference continuation by position, every `wrong`-th guess
    wrong: the base must keep exactly the right ones."""

    def __init__(self, sequence: list[int], vocab: int, wrong: int) -> None:
        self.sequence, self.vocab, self.wrong, self.calls = sequence, vocab, wrong, 0

    def __call__(self, tokens, *, positions, **_):
        self.calls += 1
        logits = torch.zeros(*tokens.shape, self.vocab)
        for b in range(tokens.shape[0]):
            for j, p in enumerate(positions[b].tolist()):
                target = self.sequence[p + 1] if p + 1 < len(self.sequence) else 0
                if self.wrong and (p + j) % self.wrong == 0:
                    target = (target + 1) % self.vocab
                logits[b, j, target] = 10.0
        return logits


def test_an_anchored_model_runs_the_base_itself_and_drafts_with_the_adapter(small, anchored):
    base = load_adapted(small.dir, device="cpu", dtype="float32", adapter=False)
    merged = load_adapted(small.dir, device="cpu", dtype="float32")  # the diffusion model: adapter merged
    ids = torch.randint(0, small.cfg.vocab_size, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(anchored.net(ids, causal_until=30), base.net(ids, causal_until=30))
        assert torch.allclose(anchored.drafter(ids, causal_until=30), merged.net(ids, causal_until=30), atol=1e-5)
    assert anchored.config.decoder == "anchored" and merged.drafter is None


@pytest.mark.parametrize("wrong", [0, 2, 3])
def test_clean_tokens_are_the_base_s_own_and_drafts_only_save_passes(anchored, monkeypatch, wrong):
    tok = anchored.tokenizer
    options = DecodeOptions(max_tokens=TOKENS, best_of=1, draft_tokens=0, max_lines=8)
    plain = anchored_infill(anchored, PREFIX, "", options=options, headed=False)
    prompt = anchored_prompt(tok, PREFIX, None, (), 200, headed=False)
    seen = committed(monkeypatch)
    anchored.drafter, saved = None, anchored.drafter
    try:
        reference = anchored_infill(anchored, PREFIX, "", options=options, headed=False)
        ref_tokens = [t for t, _ in seen]
        sequence = prompt.before + ref_tokens
        anchored.drafter = OracleDrafter(sequence, anchored.config.vocab_size, wrong)
        seen.clear()
        drafted = anchored_infill(anchored, PREFIX, "", options=DecodeOptions(**{**options.__dict__, "draft_tokens": 4, "drafter": "adapter"}),
                                  headed=False)
    finally:
        anchored.drafter = saved
    # The same text, token for token, with each token's probability as a plain causal forward of
    # the base over everything before it gives it: rejected drafts never reach a clean key.
    assert drafted.text == reference.text == plain.text
    assert [t for t, _ in seen] == ref_tokens and len(ref_tokens) > 4
    start = len(prompt.before)
    probs = plain_causal(anchored, sequence, start - 1, tok.extending(prompt.lead.encode()))
    for i, (t, p) in enumerate(seen):
        assert p == pytest.approx(float(probs[start + i - 1, t]), abs=1e-4)
    if not wrong:  # every guess right: a pass keeps its 4 drafts and adds its own token
        assert drafted.stats.forward_passes < reference.stats.forward_passes - len(ref_tokens) // 2
    else:
        assert drafted.stats.forward_passes <= reference.stats.forward_passes


def test_without_drafts_or_candidates_it_is_greedy_left_to_right_with_healing(anchored):
    tok = anchored.tokenizer
    out = anchored_infill(anchored, PREFIX, "", options=DecodeOptions(max_tokens=TOKENS, best_of=1, max_lines=8),
                          headed=False)
    ids = tok.encode(PREFIX)
    lead, ids = tok.decode(ids[-1:]), ids[:-1]
    allowed = tok.extending(lead.encode())
    greedy: list[int] = []
    for _ in range(TOKENS):
        probs = plain_causal(anchored, ids + greedy, None if greedy else len(ids) - 1, allowed)[-1]
        t = int(probs.argmax())
        if t in tok.stop_ids:
            break
        greedy.append(t)
    text = tok.decode(greedy)
    assert text.startswith(lead)
    assert out.text and text[len(lead):].startswith(out.text)


def test_a_first_token_that_covers_part_of_the_healed_lead_does_not_end_the_hole(anchored, monkeypatch):
    # Healing lets the first slot take a token the lead begins with ("\n" of "\n    "). The hole
    # starts once the lead is covered and the next slot must cover the rest; a one-line hole used
    # to end at that newline, empty.
    tok = anchored.tokenizer
    (newline,) = tok.encode("\n")
    original = AnchoredDecoder._read_prompt

    def newline_first(self):
        kv, last = original(self)
        last = last.clone()
        last[newline] = 1e4
        return kv, last

    monkeypatch.setattr(AnchoredDecoder, "_read_prompt", newline_first)
    prompt = Prompt(tok.encode("def f(x):"), [], "\n    ")
    options = DecodeOptions(max_tokens=12, best_of=2, max_lines=1, min_tokens=1)
    decoder = AnchoredDecoder(anchored, prompt, hole_shape("def f(x):\n    ", "\n    return 3\n", 1), options)
    assert decoder.hole_text([newline]) == ""
    rest = decoder._constrain(torch.zeros(1, anchored.config.vocab_size), [newline], [""])[0]
    assert set(torch.nonzero(rest > float("-inf"))[:, 0].tolist()) == set(tok.extending(b"    ")) - set(decoder.banned)
    out = last_completion(decoder.run())
    assert out.text.strip() and "\n" not in out.text


def test_the_suffix_chooses_among_the_candidate_endings(anchored, monkeypatch):
    options = DecodeOptions(max_tokens=12, best_of=3, max_lines=1, min_tokens=4)
    prefix, suffix = "def add(a, b):\n", "print(add(1, 2))\n"  # healing leaves the branch slot free
    scored: list[list[str]] = []

    def prefer_the_last(self, endings):
        scored.append([e.text for e in endings])
        return [dataclasses.replace(e, suffix_logp=float(i)) for i, e in enumerate(endings)]

    monkeypatch.setattr(AnchoredDecoder, "score", prefer_the_last)
    out = anchored_infill(anchored, prefix, suffix, options=options)
    assert len(scored) == 1 and len(scored[0]) >= 2
    assert out.text == scored[0][-1]
    assert [e.text for e in out.endings] == scored[0]  # the completion keeps every scored candidate
    monkeypatch.setattr(AnchoredDecoder, "score",
                        lambda self, endings: [dataclasses.replace(e, suffix_logp=-float(i)) for i, e in enumerate(endings)])
    assert anchored_infill(anchored, prefix, suffix, options=options).text == scored[0][0]


@pytest.mark.parametrize("rule, chosen", [("joint", 0), ("mean", 1), ("suffix", 2)])
def test_the_ending_rule_decides_which_scored_candidate_wins(anchored, monkeypatch, rule, chosen):
    """Three candidates: the likeliest in total (short), the likeliest per token (long), and the
    one the suffix follows best. `ending` picks by its own measure; None is the shape's default."""
    parts = [(-2.0, -6.0, 2, 8), (-9.0, -6.5, 20, 8), (-12.0, -5.0, 12, 8)]  # text, suffix logp; tokens
    seen: list[list[str]] = []

    def fixed(self, endings):
        seen.append([e.text for e in endings])
        return [dataclasses.replace(e, text_logp=a, suffix_logp=b, text_tokens=n, suffix_tokens=m)
                for e, (a, b, n, m) in zip(endings, parts + [(-99.0, -99.0, 1, 8)] * len(endings))]

    monkeypatch.setattr(AnchoredDecoder, "score", fixed)
    options = DecodeOptions(max_tokens=12, best_of=3, max_lines=1, min_tokens=4, ending=rule)
    out = anchored_infill(anchored, "def add(a, b):\n", "print(add(1, 2))\n", options=options)
    assert len(seen[0]) >= 3 and out.text == seen[0][chosen]


def test_the_score_is_the_base_s_likelihood_of_candidate_and_suffix(anchored):
    tok = anchored.tokenizer
    prompt = anchored_prompt(tok, PREFIX, "m.py", (), 200)
    decoder = AnchoredDecoder(anchored, prompt, hole_shape(PREFIX, " + b\n"), DecodeOptions())
    texts = [" + b", " * 2 + b"]
    scored = decoder.score([Ending(text, 0) for text in texts])
    for text, ending in zip(texts, scored):
        ids = tok.encode(prompt.lead + text + " + b\n")
        probs = plain_causal(anchored, prompt.before + ids)
        per_token = [float(torch.log(probs[len(prompt.before) + i - 1, t])) for i, t in enumerate(ids)]
        head = len(tok.encode(prompt.lead + text))
        assert ending.joint == pytest.approx(sum(per_token), abs=1e-3)
        # The split is where the candidate's tokens end: the suffix part is the suffix head's alone.
        assert (ending.text_tokens, ending.suffix_tokens) == (head, len(ids) - head)
        assert ending.suffix_logp == pytest.approx(sum(per_token[head:]), abs=1e-3)


@pytest.mark.parametrize("prefix, suffix, one_line, rest, head", [
    ("x = f(", ")\nprint(x)\n", True, ")", ")\nprint(x)\n"),
    ("def f():\n", "\n\nreturn 1\nz = 2\nw\n", False, "", "\n\nreturn 1\nz = 2\n"),
    ("def f():\n    return ", "\n", False, "", ""),
])
def test_hole_shape_reads_the_text_around_the_hole(prefix, suffix, one_line, rest, head):
    shape = hole_shape(prefix, suffix)
    assert (shape.one_line, shape.rest_of_line, shape.suffix_head) == (one_line, rest, head)


@pytest.mark.parametrize("suffix, text, end", [
    # A long first suffix line is anchor enough: the block ends where it is written again.
    ("    total = a + b\n    return total\n", "    a += 1\n    total = a + b\n    return total\n", 11),
    # A short one (`)`) is written inside blocks too: the next line must follow it.
    ("    )\n    return x\n", "    f(a,\n    )\n    y = 2\n", None),
    ("    )\n    return x\n", "    f(a,\n    )\n\n    return x\n", 9),
    # The same code in another block (deeper indentation) is not the suffix.
    ("    return total\n", "    if a:\n        return total\n", None),
    # Never at the hole's first line (the hole would be empty), nor on a line still being written.
    ("    total = a + b\n", "    total = a + b\n", None),
    ("    total = a + b\n", "    a += 1\n    total = a + b", None),
])  # fmt: skip
def test_a_block_ends_where_it_writes_the_suffix_s_first_lines_again(suffix, text, end):
    assert reaches_suffix(text, suffix_anchor(suffix)) == end


def test_a_branch_that_reaches_the_suffix_is_the_candidate(anchored):
    prefix, suffix = "def f(a, b):\n", "    total = a + b\n    return total\n"
    decoder = AnchoredDecoder(anchored, anchored_prompt(anchored.tokenizer, prefix, None, (), 100),
                              hole_shape(prefix, suffix), DecodeOptions())
    reached = Branch(anchored.tokenizer.encode("    a += 1\n    b += 1\n    total = a + b\n"), [])
    other = Branch(anchored.tokenizer.encode("    a += 2\n    b += 2\n"), [], stopped=True)
    for branch in (reached, other):
        decoder._check_end(branch)
    assert reached.reached_suffix and reached.text_end == len("    a += 1\n    b += 1\n")
    assert decoder.candidates([other, reached]) == [("    a += 1\n    b += 1\n", 1)]
    decoder.exclude = "    a += 1\n    b += 1\n"  # a refinement's old text: the others are candidates again
    assert [c for c, _ in decoder.candidates([other, reached])][:2] == ["    a += 2\n    b += 2\n", "    a += 2\n"]


def test_a_branch_far_less_likely_than_the_best_is_given_up_and_offers_no_candidate(anchored):
    from dcode.diffusion.anchored import PRUNE_NATS

    likely, close, hopeless = (Branch([1, 2, 3], [0.9, 0.9, 0.9]), Branch([1, 4, 5, 6], [0.9, 0.5, 0.5, 1e-9]),
                               Branch([1, 7, 8], [0.9, 1e-4, 1e-4]))
    # Compared over the same number of tokens: `close` is judged on its first three.
    assert AnchoredDecoder._hopeless([likely, close, hopeless], [0, 1, 2]) == [2]
    assert sum(map(math.log, hopeless.probs)) < sum(map(math.log, likely.probs)) - PRUNE_NATS
    assert AnchoredDecoder._hopeless([hopeless], [0]) == []  # the last live branch always goes on
    prefix = "def f(a, b):\n"
    decoder = AnchoredDecoder(anchored, anchored_prompt(anchored.tokenizer, prefix, None, (), 100),
                              hole_shape(prefix, "print(1)\n"), DecodeOptions())
    kept, gone = (Branch(anchored.tokenizer.encode(t), [], stopped=True) for t in ("    return a\n", "    return b\n"))
    gone.pruned = True
    assert decoder.candidates([kept, gone]) == [("    return a\n", 0)]


def test_a_mid_line_hole_ends_where_the_base_repeats_the_rest_of_the_line(anchored):
    decoder = AnchoredDecoder(anchored, anchored_prompt(anchored.tokenizer, "x = f(", None, (), 100),
                              hole_shape("x = f(", "b)\n"), DecodeOptions())
    assert decoder._endings("a, b)") == ["a, b)", "a,", "a, "]  # each followed by "b)" gives the line back


def test_the_engine_and_build_prompt_use_the_anchored_decoder(anchored):
    prompt = build_prompt(anchored, PREFIX, "\n", path="m.py")
    assert prompt.after == [] and prompt.lead  # the base reads no suffix, and the prefix is healed
    out = infill(anchored, PREFIX, "\n", path="m.py", options=DecodeOptions(max_tokens=8, max_lines=1))
    assert "\n" not in out.text and anchored.tokenizer.decode(out.token_ids) == out.text


# --- the drafter's training -----------------------------------------------------------------------


def test_cuts_never_overlap_and_leave_room_for_their_targets():
    rng = random.Random(0)
    for length in (60, 100, 300):
        cuts = place_cuts(length, 4, 8, rng)
        assert cuts is not None and all(b - a >= 8 for a, b in zip(cuts, cuts[1:]))
        assert cuts[0] >= 8 and cuts[-1] + 8 <= length - 1
    assert place_cuts(30, 4, 8, rng) is None


def _drafting_nets(small):
    base = load_adapted(small.dir, device="cpu", dtype="float32", adapter=False)
    drafter = load_adapted(small.dir, device="cpu", dtype="float32", adapter=False).net
    params = attach(drafter, AdapterConfig(base_vocab=small.cfg.vocab_size - 4, rank=2, alpha=4.0))
    return base, drafter, params


def test_a_block_sees_the_context_before_its_start_and_itself_only(small):
    base, drafter, _ = _drafting_nets(small)
    tokens = torch.randint(0, 300, (1, 64), generator=torch.Generator().manual_seed(0))
    batch = DraftBatch(tokens, torch.ones(1, 64, dtype=torch.bool), torch.tensor([[10, 30]]))
    mask = block_attention(batch.valid, batch.cuts, 4)[0, 0]
    assert mask[0, :10].all() and not mask[0, 10:64].any() and mask[0, 64:68].all() and not mask[0, 68:].any()
    assert mask[4, :30].all() and not mask[4, 30:68].any() and mask[4, 68:].all()
    changed = tokens.clone()
    changed[0, 30] = (changed[0, 30] + 1) % 300  # the second block's own token: only it may change

    def first_block_logits(t):
        with torch.no_grad():
            _, context = base.net(t, causal_until=64, return_cache=True)
            inputs = torch.full((1, 8), base.tokenizer.mask_id)
            inputs[:, ::4] = t.gather(1, batch.cuts)
            positions = (batch.cuts[:, :, None] + torch.arange(4)).flatten(1)
            return drafter(inputs, positions=positions, cache=context, attn_mask=block_attention(batch.valid, batch.cuts, 4))

    assert torch.allclose(first_block_logits(tokens)[:, :4], first_block_logits(changed)[:, :4], atol=1e-5)
    assert not torch.allclose(first_block_logits(tokens)[:, 4:], first_block_logits(changed)[:, 4:], atol=1e-5)


def test_training_the_drafter_brings_it_closer_to_the_base(small):
    base, drafter, params = _drafting_nets(small)
    tokens = torch.randint(0, 300, (2, 80), generator=torch.Generator().manual_seed(1))
    batch = DraftBatch(tokens, torch.ones(2, 80, dtype=torch.bool), torch.tensor([[10, 40], [20, 50]]))
    opt = torch.optim.AdamW(params, lr=3e-2)
    first = draft_loss(base.net, drafter, batch, 6, base.tokenizer.mask_id)[0].detach()
    for _ in range(15):
        loss, accepted = draft_loss(base.net, drafter, batch, 6, base.tokenizer.mask_id)
        loss.backward()
        opt.step()
        opt.zero_grad()
    last, accepted = draft_loss(base.net, drafter, batch, 6, base.tokenizer.mask_id)
    last = last.detach()
    assert last.item() < first.item() * 0.8 and 0 <= accepted.item() <= 6


def test_refine_re_decides_from_the_weakest_token_on_and_keeps_what_precedes(anchored):
    options = DecodeOptions(max_tokens=12, best_of=3, min_tokens=4, max_lines=1)
    prefix, suffix = "def add(a, b):\n", "print(add(1, 2))\n"
    draft = infill(anchored, prefix, suffix, options=options)
    assert draft.token_ids
    weakest = min(range(len(draft.token_ids)), key=lambda i: draft.confidences[i])
    start = anchored.tokenizer.char_spans(draft.token_ids)[weakest][0]
    again = refine(anchored, prefix, suffix, draft, remask=1, options=options)
    assert again.text.startswith(draft.text[:start]) and again.text != draft.text
    assert anchored.tokenizer.decode(again.token_ids) == again.text
    assert len(again.confidences) == len(again.token_ids)
    by_lines = refine(anchored, prefix, suffix, again, lines=(1, 1), options=options)
    assert by_lines.text != again.text and anchored.tokenizer.decode(by_lines.token_ids) == by_lines.text


def test_best_of_and_draft_tokens_are_settings(tmp_path):
    from dcode.errors import InputError
    from dcode.settings import load_settings

    settings, _ = load_settings(tmp_path, {"best_of": 2}, env={"DCODE_DRAFT_TOKENS": "3", "DCODE_DRAFTER": "adapter"})
    options = settings.decode_options()
    assert (options.best_of, options.draft_tokens, options.drafter) == (2, 3, "adapter")
    assert load_settings(tmp_path, {}, env={})[0].decode_options().drafter == "context"
    with pytest.raises(InputError, match="best_of"):
        load_settings(tmp_path, {}, env={"DCODE_BEST_OF": "0"})
    with pytest.raises(InputError, match="drafter must be context or adapter"):
        load_settings(tmp_path, {}, env={"DCODE_DRAFTER": "oracle"})


def test_dcode_small_is_the_default_once_its_base_is_pulled(tmp_path, monkeypatch):
    from dcode.model.base import BaseManifest, base_path
    from dcode.model.paths import default_model_dir, shipped_model

    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path))
    assert default_model_dir().name == "dcode-mini"
    base = base_path(BaseManifest.load(shipped_model("dcode-small")))
    base.parent.mkdir(parents=True)
    base.write_bytes(b"gguf")
    assert default_model_dir().name == "dcode-small"


def test_context_lookup_drafts_what_followed_the_newest_tokens_last_time():
    from dcode.diffusion.lookup import ContextLookup

    lookup = ContextLookup([1, 2, 3, 4, 5, 6], [40, 41, 42])
    assert lookup.draft([2, 3], 3) == [4, 5, 6]  # "2 3" occurred in the prompt
    assert lookup.draft([9, 6], 5) == []  # "9 6" never did, and one token alone is no match
    assert lookup.draft([5, 6, 40], 2) == [41, 42]  # the suffix's first tokens count
    assert lookup.draft([7, 8, 9, 7, 8], 4) == [9, 7, 8]  # the branch's own text, latest first
    assert lookup.draft([8, 3, 4], 2) == [5, 6]  # the longest match wins: "3 4" alone would do too


def test_drafts_of_any_length_leave_every_branch_as_the_base_writes_it(anchored, monkeypatch):
    # Drafts copied from the context come in any length, right or wrong: rows with shorter ones
    # are padded. Whatever they are, the text is the base's, and right ones save passes.
    import dcode.diffusion.anchored as anchored_module

    seen = committed(monkeypatch)
    for best_of in (1, 3):
        options = DecodeOptions(max_tokens=TOKENS, best_of=best_of, max_lines=8)
        seen.clear()
        plain = anchored_infill(anchored, PREFIX, "", options=options, headed=False)
        reference = [t for t, _ in seen]

        class ReferenceLookup:  # the greedy branch's next tokens, 0 to k of them, every third wrong
            def __init__(self, before, after) -> None:
                pass

            def draft(self, branch, k):
                n = len(branch)
                guess = reference[n : n + n % (k + 1)]
                return [(t + 1) % 300 if (n + j) % 3 == 2 else t for j, t in enumerate(guess)]

        monkeypatch.setattr(anchored_module, "ContextLookup", ReferenceLookup)
        drafted = anchored_infill(anchored, PREFIX, "", options=DecodeOptions(**{**options.__dict__, "draft_tokens": 4}),
                                  headed=False)
        monkeypatch.undo()
        seen = committed(monkeypatch)
        assert drafted.text == plain.text and drafted.token_ids == plain.token_ids
        assert drafted.confidences == pytest.approx(plain.confidences, abs=1e-4)
        if best_of == 1:
            assert drafted.stats.forward_passes < plain.stats.forward_passes
