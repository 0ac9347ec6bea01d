"""The transformer: shapes, bidirectionality, and the KV cache of fixed positions."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dcode.errors import ModelError
from dcode.model.device import resolve_device, resolve_dtype
from dcode.model.loaded import align_logits, build_model
from dcode.model.transformer import Transformer, apply_rope, rope_tables
from tests.conftest import tiny_config


def test_logits_shape(tiny_model):
    ids = torch.randint(0, 300, (3, 17))
    assert tiny_model.logits(ids).shape == (3, 17, tiny_model.config.vocab_size)


def test_attention_is_bidirectional(tiny_model):
    # Changing a late token must change the output at an earlier position (no causal mask).
    ids = torch.randint(4, 300, (1, 12))
    other = ids.clone()
    other[0, 10] = (other[0, 10] + 1) % 300
    a, b = tiny_model.logits(ids), tiny_model.logits(other)
    assert not torch.allclose(a[0, 2], b[0, 2])


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_cached_forward_matches_full_forward(tiny_tokenizer, qkv_bias):
    cfg = tiny_config(tiny_tokenizer, qkv_bias=qkv_bias, tie_embeddings=False)
    net = Transformer(cfg)
    net.init_weights(1)
    if qkv_bias:
        for block in net.blocks:
            torch.nn.init.normal_(block.attn.wq.bias, std=0.5)
            torch.nn.init.normal_(block.attn.wk.bias, std=0.5)
    ids = torch.randint(0, 300, (2, 20))
    full, kv = net(ids, return_cache=True)
    active = torch.tensor([7, 8, 9, 10, 11])
    fixed = torch.tensor([i for i in range(20) if i not in active.tolist()])
    part = net(ids[:, active], positions=active, cache=kv.select(fixed))
    torch.testing.assert_close(part, full[:, active], atol=1e-5, rtol=1e-5)
    # ...and the cache matters: without it the active rows see a different context.
    alone = net(ids[:, active], positions=active)
    assert not torch.allclose(alone, full[:, active], atol=1e-3)


def test_an_extended_cache_is_the_cache_followed_by_what_was_read(tiny_tokenizer):
    net = Transformer(tiny_config(tiny_tokenizer))
    net.init_weights(3)
    ids = torch.randint(4, 300, (2, 12))
    _, whole = net(ids, causal_until=12, return_cache=True)
    _, head = net(ids[:, :8], causal_until=8, return_cache=True)
    logits, extended = net(ids[:, 8:], positions=torch.arange(8, 12), cache=head, causal_until=12,
                           return_cache=True, extend_cache=True)
    assert extended.positions.tolist() == [list(range(12))] * 2
    for got, want in zip(extended.keys + extended.values, whole.keys + whole.values):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    _, new_only = net(ids[:, 8:], positions=torch.arange(8, 12), cache=head, causal_until=12, return_cache=True)
    assert new_only.keys[0].shape[2] == 4 and extended.keys[0].shape[2] == 12


def test_rows_sharing_a_prompt_read_it_once_and_match_rows_with_their_own_copy(tiny_tokenizer):
    # Three continuations of one prompt, each with its own tokens after it: attention over the
    # shared prompt plus each row's own keys equals attention over a per-row copy of the prompt.
    net = Transformer(tiny_config(tiny_tokenizer))
    net.init_weights(4)
    prompt = torch.randint(4, 300, (1, 9))
    tails = torch.randint(4, 300, (3, 5))
    _, kv = net(prompt, causal_until=9, return_cache=True)
    shared = kv.shared_by(3)
    assert shared.keys[0].shape[:3] == (3, kv.keys[0].shape[1], 0) and shared.length == 9
    copied = dataclasses.replace(kv, keys=[k.expand(3, -1, -1, -1) for k in kv.keys],
                                 values=[v.expand(3, -1, -1, -1) for v in kv.values])
    valid = torch.tensor([[True] * 9 + [True, True, False, True, True]] * 3)  # one padded slot
    args = dict(positions=torch.arange(9, 14), causal_until=14, key_mask=valid, return_cache=True, extend_cache=True)
    got, got_kv = net(tails, cache=shared, **args)
    want, want_kv = net(tails, cache=copied, **args)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # The extended cache keeps the prompt shared and holds only each row's own five positions.
    assert got_kv.shared_keys is kv.keys and got_kv.keys[0].shape[2] == 5 and got_kv.length == 14
    torch.testing.assert_close(got_kv.keys[1], want_kv.keys[1][:, :, 9:], atol=1e-5, rtol=1e-5)
    # Picking a row keeps the sharing, and it continues exactly as a plain causal forward would.
    _, batch_kv = net(tails, cache=shared, positions=torch.arange(9, 14), causal_until=14, return_cache=True,
                      extend_cache=True)
    row = batch_kv.rows(torch.tensor([1]))
    assert row.shared_keys is kv.keys and row.keys[0].shape[0] == 1
    nxt = torch.randint(4, 300, (1, 1))
    step = net(nxt, positions=torch.tensor([14]), cache=row, causal_until=15)
    whole = net(torch.cat([prompt, tails[1:2], nxt], dim=1), causal_until=15)
    torch.testing.assert_close(step[0, -1], whole[0, -1], atol=1e-5, rtol=1e-5)


def test_key_mask_hides_padding(tiny_tokenizer):
    cfg = tiny_config(tiny_tokenizer)
    net = Transformer(cfg)
    net.init_weights(2)
    ids = torch.randint(4, 300, (1, 10))
    padded = torch.cat([torch.full((1, 3), cfg.pad_id), ids], dim=1)
    key_mask = torch.tensor([[False] * 3 + [True] * 10])
    # RoPE is relative, so shifting the real tokens by 3 positions with masked pads changes nothing.
    torch.testing.assert_close(net(padded, key_mask=key_mask)[:, 3:], net(ids), atol=1e-5, rtol=1e-5)


def test_align_logits_shift():
    raw = torch.arange(5.0).view(1, 5, 1)
    assert align_logits(raw, 0).flatten().tolist() == [0, 1, 2, 3, 4]
    assert align_logits(raw, 1).flatten().tolist() == [0, 0, 1, 2, 3]


def test_tied_and_untied_heads(tiny_tokenizer):
    tied = build_model(tiny_config(tiny_tokenizer, tie_embeddings=True), tiny_tokenizer)
    untied = build_model(tiny_config(tiny_tokenizer, tie_embeddings=False), tiny_tokenizer)
    assert tied.net.head.weight is tied.net.embed.weight
    assert untied.net.head.weight is not untied.net.embed.weight
    params = lambda m: sum(p.numel() for p in m.net.parameters())  # noqa: E731
    assert params(tied) == tied.config.num_parameters()
    assert params(untied) == untied.config.num_parameters()


def test_device_policy():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ModelError, match="dtype"):
        resolve_dtype("int3", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_config_rejects_bad_head_split(tiny_tokenizer):
    with pytest.raises(ModelError, match="n_kv_heads"):
        tiny_config(tiny_tokenizer, n_heads=4, n_kv_heads=3)


def test_float32_rope_tables_rotate_bf16_activations_in_float32():
    """LLaDA's rope_full_precision: q and k are upcast, rotated, and cast back."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 64, 16).bfloat16()
    positions = torch.arange(1000, 1064)[None]  # far positions, where bf16 tables lose the most
    cos32, sin32 = rope_tables(positions, 16, 500000.0, torch.float32)
    rotated = apply_rope(x, cos32, sin32)
    assert rotated.dtype == torch.bfloat16
    assert torch.equal(rotated, apply_rope(x.float(), cos32, sin32).bfloat16())
    cos16, sin16 = rope_tables(positions, 16, 500000.0, torch.bfloat16)
    assert not torch.equal(rotated, apply_rope(x, cos16, sin16))  # the bf16 path differs


def test_a_rope_fp32_model_in_bf16_gets_float32_tables(tiny_tokenizer):
    cfg = dataclasses.replace(tiny_config(tiny_tokenizer), rope_fp32=True)
    net = Transformer(cfg)
    cos, _ = net.rope(torch.arange(4)[None], torch.bfloat16)
    assert cos.dtype == torch.float32
    assert Transformer(tiny_config(tiny_tokenizer)).rope(torch.arange(4)[None], torch.bfloat16)[0].dtype == torch.bfloat16
