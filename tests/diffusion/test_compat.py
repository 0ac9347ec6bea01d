"""--compat samplers against the decoding traces recorded with the upstream reference code."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dcode.diffusion.compat import (
    cut_at_stop, dream_generate, dreamon_infill, get_num_transfer_tokens, llada_generate,
)
from dcode.errors import ModelError
from dcode.model.config import ModelConfig
from dcode.model.loader import load_model
from tests.conftest import FIXTURES

DREAM_EXP = json.loads((FIXTURES / "dream-tiny" / "expected.json").read_text())
LLADA_EXP = json.loads((FIXTURES / "llada-tiny" / "expected.json").read_text())


@pytest.fixture(scope="module")
def dream():
    return load_model(FIXTURES / "dream-tiny", device="cpu")


@pytest.fixture(scope="module")
def llada():
    return load_model(FIXTURES / "llada-tiny", device="cpu")


def _dream_kwargs(run: dict) -> dict:
    kwargs = dict(run["kwargs"])
    assert kwargs.pop("mask_token_id") == 511
    return kwargs


def _llada_kwargs(run: dict, prompt_len: int) -> dict:
    kwargs = dict(run["kwargs"])
    assert kwargs.pop("mask_id") == 511
    if kwargs.pop("attention_mask", None) == "all ones":
        kwargs["attention_mask"] = torch.ones(1, prompt_len, dtype=torch.long)
    return kwargs


@pytest.mark.parametrize("run", DREAM_EXP["generation"], ids=lambda r: "{alg}-s{steps}-k{top_k}".format(**r["kwargs"]))
def test_dream_trace_token_for_token(dream, run):
    out, history = dream_generate(dream, run["prompt_ids"], output_history=True, **_dream_kwargs(run))
    assert out[0].tolist() == run["output_ids"]
    assert [h[0].tolist() for h in history] == run["history"]


@pytest.mark.parametrize("run", LLADA_EXP["generation"],
                         ids=lambda r: "s{steps}-g{gen_length}-b{block_length}-cfg{cfg_scale}".format(**r["kwargs"]))
def test_llada_trace_token_for_token(llada, run):
    out = llada_generate(llada, run["prompt_ids"], **_llada_kwargs(run, len(run["prompt_ids"])))
    assert out[0].tolist() == run["output_ids"]


def test_dream_schedule_of_the_traces(dream):
    run = DREAM_EXP["generation"][0]  # 8 masks over 8 steps
    history = [torch.tensor(h) for h in run["history"]]
    masks = [int((h == 511).sum()) for h in history]
    assert [8 - masks[0]] + [a - b for a, b in zip(masks, masks[1:])] == [0, 1, 1, 1, 1, 1, 1, 2]


def test_llada_transfer_schedule_front_loads_the_remainder():
    counts = get_num_transfer_tokens(torch.ones(2, 8, dtype=torch.bool), 3)
    assert counts.tolist() == [[3, 3, 2], [3, 3, 2]]


def test_dream_left_padded_batch_matches_unpadded_runs(dream):
    run = DREAM_EXP["generation"][0]
    prompt = run["prompt_ids"]
    other = [510, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    batch = torch.tensor([[510, 510] + prompt, other])
    mask = torch.tensor([[0, 0] + [1] * len(prompt), [1] * len(other)])
    out = dream_generate(dream, batch, attention_mask=mask, **_dream_kwargs(run))
    assert out[0, 2:].tolist() == run["output_ids"]
    assert out[1].tolist() == dream_generate(dream, other, **_dream_kwargs(run))[0].tolist()


def test_llada_left_padded_batch_matches_unpadded_run(llada):
    run = LLADA_EXP["generation"][1]
    prompt = run["prompt_ids"]
    batch = torch.tensor([[510, 510] + prompt, [510, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    mask = torch.tensor([[0, 0] + [1] * len(prompt), [1] * 10])
    out = llada_generate(llada, batch, **{**_llada_kwargs(run, 10), "attention_mask": mask})
    assert out[0, 2:].tolist() == run["output_ids"]


def test_dream_tokens_hook_pins_a_suffix(dream):
    def hook(step, x, logits):
        x[0, -2:] = torch.tensor([64, 128])
        return x

    out = dream_generate(dream, DREAM_EXP["generation"][0]["prompt_ids"], 8, 4, "entropy", tokens_hook=hook)
    assert out[0, -2:].tolist() == [64, 128] and 511 not in out[0].tolist()


def test_cut_at_stop():
    assert cut_at_stop([5, 6, 7, 2, 8], {2, 3}) == [5, 6, 7]
    assert cut_at_stop([5, 6], {2}) == [5, 6]


# --- DreamOn expand / delete (mechanics, with a scripted network) ----------------------------------

V, MASK, EOS, EXPAND, BOS, TOK = 16, 15, 14, 13, 12, 3


class ScriptedDream(nn.Module):
    """Raw Dream-style output: row i-1 carries `rule(canvas, i)` ({token: logit}) for position i."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, tokens, positions=None, key_mask=None, **_):
        B, T = tokens.shape
        raw = torch.zeros(B, T, V)
        canvas = tokens[0].tolist()
        for i in range(1, T):
            for tok, logit in self.rule(canvas, i).items():
                raw[:, i - 1, tok] = logit
        return raw


def scripted_model(rule, expand_id=EXPAND):
    cfg = ModelConfig(vocab_size=V, dim=8, n_layers=1, n_heads=1, n_kv_heads=1, ffn_dim=8, max_seq_len=64,
                      logit_shift=1, mask_id=MASK, pad_id=EOS, eos_id=EOS, family="dream")
    tok = SimpleNamespace(expand_id=expand_id, bos_id=BOS)
    return SimpleNamespace(net=ScriptedDream(rule), config=cfg, tokenizer=tok, device=torch.device("cpu"))


def test_dreamon_expand_grows_the_canvas_up_to_the_budget():
    model = scripted_model(lambda canvas, i: {EXPAND: 8.0, TOK: 6.0})
    sizes = []
    middle = dreamon_infill(model, [1, 2], [4], initial_masks=2, max_new_tokens=5,
                            on_step=lambda canvas: sizes.append(len(canvas)))
    assert middle == [TOK] * 5  # expanded 2 -> 5 slots, then expand was disabled
    start = 1 + 2 + 2 + 1 + 1  # bos + prefix + 2 masks + suffix + eos
    assert sizes[:3] == [start + 1, start + 2, start + 3] and max(sizes) == start + 3


def test_dreamon_eos_inside_the_middle_is_deleted():
    def rule(canvas, i):  # first step only: EOS, very sure, at the third hole slot (index 5)
        return {EOS: 12.0} if len(canvas) == 9 and i == 5 else {TOK: 3.0}

    canvases = []
    middle = dreamon_infill(scripted_model(rule), [1, 2], [4], initial_masks=4, on_step=canvases.append)
    # EOS committed at slot 3, the mask right of it padded with EOS, both deleted.
    assert canvases[0] == [BOS, 1, 2, MASK, MASK, 4, EOS]
    assert middle == [TOK, TOK]
    middle = dreamon_infill(scripted_model(rule), [1, 2], [4], initial_masks=4, pad_eos_to_right=False)
    assert middle == [TOK, TOK, TOK]  # only the committed EOS was deleted
    middle = dreamon_infill(scripted_model(rule), [1, 2], [4], initial_masks=4, delete_eos=False,
                            pad_eos_to_right=False)
    assert middle == [TOK, TOK, EOS, TOK]


def test_dreamon_needs_an_expand_token():
    with pytest.raises(ModelError, match="expand"):
        dreamon_infill(scripted_model(lambda c, i: {TOK: 1.0}, expand_id=None), [1], [2])


def test_dreamon_runs_on_a_real_network(dream):
    # dream-tiny has no <|expand|>; any id works for the mechanics (rows are random weights).
    middle = dreamon_infill(dream, [17, 42, 311], [64, 128], initial_masks=4, max_new_tokens=12, expand_id=300)
    assert len(middle) <= 12 and 511 not in middle and 300 not in middle
