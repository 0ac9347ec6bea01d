"""Llama GGUF files read into dcode's transformer and tokenizer (dcode.model.gguf_llama).

The files are tiny llamas in SmolLM2's layout, written by tests/tiny_gguf.py with gguf's own writer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer

from dcode.errors import ModelError
from dcode.model.gguf_llama import (
    build_base, grow_embedding, permute_rope_rows, read_llama_gguf, tokenizer_from_gguf, unpermute_rope_rows,
)
from dcode.model.loader import build_model

from tiny_gguf import (
    CONTROL, CORPUS, CTX, DIM, EPS, EXTRA, FFN, HEAD_DIM, HEADS, KV_HEADS, LAYERS, ROUND_TRIPS, THETA, llama_cpp_permute,
    random_weights, train_bpe, write_gguf,
)


@pytest.fixture(scope="module")
def bpe() -> HFTokenizer:
    return train_bpe()


@pytest.fixture(scope="module")
def vocab(bpe) -> dict:
    return json.loads(bpe.to_str())["model"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, vocab) -> dict:
    """A quantized tied file (SmolLM2's layout) and an exact F32 untied one, with their weights."""
    root = tmp_path_factory.mktemp("gguf")
    n = len(vocab["vocab"])
    tied, untied = random_weights(n, tied=True), random_weights(n, tied=False, seed=1)
    return {
        "q4": (write_gguf(root / "q4.gguf", tied, vocab), tied),
        "f32": (write_gguf(root / "f32.gguf", untied, vocab, quantized=False), untied),
    }


@pytest.fixture(scope="module")
def tokenizer(files):
    return tokenizer_from_gguf(read_llama_gguf(files["q4"][0]), EXTRA)


# --- (a) metadata -> config ----------------------------------------------------------------------


def test_config_comes_from_the_metadata(files, vocab):
    path, _ = files["q4"]
    n = len(vocab["vocab"])
    model = read_llama_gguf(path)
    cfg = model.config
    sizes = (cfg.vocab_size, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim, cfg.max_seq_len)
    assert sizes == (n, DIM, LAYERS, HEADS, KV_HEADS, FFN, CTX)
    assert cfg.rope_theta == THETA and cfg.norm_eps == pytest.approx(EPS) and cfg.tie_embeddings
    assert cfg.family == "llama" and not cfg.qkv_bias
    assert (model.bos_id, model.eos_id, model.unk_id, model.pad_id) == (1, 2, 0, 2)
    assert model.metadata["tokenizer.ggml.pre"] == "smollm" and len(model.merges) == len(vocab["merges"])

    base, state, tok = build_base(path, EXTRA, family="smol", logit_shift=1)
    assert base.vocab_size == n + len(EXTRA) == tok.vocab_size and base.logit_shift == 1
    assert base.family == "smol" and base.max_seq_len == CTX and base.tie_embeddings
    assert (base.mask_id, base.pad_id, base.eos_id) == (n, n + 1, 0) == (tok.mask_id, tok.pad_id, tok.eos_id)
    embed = state["embed.weight"]
    assert embed.shape == (n + len(EXTRA), DIM) and "head.weight" not in state
    assert torch.equal(embed[:n], model.state["embed.weight"])
    assert torch.allclose(embed[n:], model.state["embed.weight"].mean(0).expand(len(EXTRA), -1))

    untied_cfg, untied_state, _ = build_base(files["f32"][0], EXTRA)
    assert not untied_cfg.tie_embeddings and untied_state["head.weight"].shape == (n + len(EXTRA), DIM)
    with pytest.raises(ModelError, match="unknown config keys"):
        build_base(path, EXTRA, no_such_field=1)


def test_grow_embedding_appends_mean_rows():
    e = torch.arange(6.0).reshape(3, 2)
    assert grow_embedding(e, 2).tolist() == [[0, 1], [2, 3], [4, 5], [2, 3], [2, 3]]


# --- (b) weights ---------------------------------------------------------------------------------


def test_permutation_matches_llama_cpp_and_inverts():
    w = torch.randn(48, 8)
    for n_head in (1, 2, 3):
        permuted = permute_rope_rows(w, n_head)
        assert torch.equal(permuted, torch.from_numpy(llama_cpp_permute(w.numpy(), n_head)))
        assert torch.equal(unpermute_rope_rows(permuted, n_head), w)
        assert not torch.equal(permuted, w)


def test_f32_weights_are_exact(files):
    path, weights = files["f32"]
    state = read_llama_gguf(path).state
    assert set(state) == {f"{name}.weight" for name in weights}
    for name, w in weights.items():
        assert state[f"{name}.weight"].dtype == torch.float32
        assert torch.equal(state[f"{name}.weight"], w), name


def test_quantized_weights_are_within_one_step(files):
    """Q8_0 and Q4_1 error stays within one quantization step of each 32-value block; with the
    Q/K rows in the wrong order the error would be of the weights' own size."""
    path, weights = files["q4"]
    state = read_llama_gguf(path).state
    for name, w in weights.items():
        got = state[f"{name}.weight"]
        assert got.shape == w.shape
        if w.dim() == 1:
            assert torch.equal(got, w)
            continue
        blocks = w.reshape(w.shape[0], -1, 32)
        step = blocks.abs().amax(-1) / 127 if name == "embed" else (blocks.amax(-1) - blocks.amin(-1)) / 15
        err = (got - w).reshape(blocks.shape).abs().amax(-1)
        assert (err <= step * 1.01 + 1e-6).all(), name


# --- (c) forward ---------------------------------------------------------------------------------


def reference_llama(w: dict[str, torch.Tensor], tokens: list[int]) -> torch.Tensor:
    """HF's LlamaForCausalLM in plain float64 torch: rotate-half RoPE on HF-layout weights."""
    w = {k: v.double() for k, v in w.items()}
    T = len(tokens)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * g

    inv_freq = 1.0 / THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)

    def rope(t):  # [heads, T, head_dim]
        half = HEAD_DIM // 2
        return t * cos + torch.cat([-t[..., half:], t[..., :half]], -1) * sin

    causal = torch.ones(T, T, dtype=torch.bool).tril()
    x = w["embed"][tokens]
    for i in range(LAYERS):
        p = f"blocks.{i}."
        h = rms(x, w[p + "attn_norm"])
        q = rope((h @ w[p + "attn.wq"].T).view(T, HEADS, HEAD_DIM).transpose(0, 1))
        k = rope((h @ w[p + "attn.wk"].T).view(T, KV_HEADS, HEAD_DIM).transpose(0, 1))
        v = (h @ w[p + "attn.wv"].T).view(T, KV_HEADS, HEAD_DIM).transpose(0, 1)
        k, v = (t.repeat_interleave(HEADS // KV_HEADS, dim=0) for t in (k, v))
        scores = (q @ k.transpose(1, 2) / HEAD_DIM**0.5).masked_fill(~causal, float("-inf"))
        x = x + (scores.softmax(-1) @ v).transpose(0, 1).reshape(T, DIM) @ w[p + "attn.wo"].T
        h = rms(x, w[p + "mlp_norm"])
        x = x + (F.silu(h @ w[p + "mlp.w_gate"].T) * (h @ w[p + "mlp.w_up"].T)) @ w[p + "mlp.w_down"].T
    return rms(x, w["norm"]) @ w.get("head", w["embed"]).T


def test_causal_forward_matches_reference_llama(files, bpe):
    path, weights = files["f32"]
    cfg, state, tok = build_base(path, EXTRA)
    net = build_model(cfg, tok, state, device="cpu", dtype="float32").net
    ids = bpe.encode(CORPUS[1]).ids
    expected = reference_llama(weights, ids).float()
    with torch.no_grad():
        got = net(torch.tensor([ids]), causal_until=len(ids))[0, :, : expected.shape[1]]
        assert torch.allclose(got, expected, atol=1e-3, rtol=1e-4)
        # The same weights with the GGUF's row order left in place give another model.
        for block in net.blocks:
            block.attn.wq.weight.copy_(permute_rope_rows(block.attn.wq.weight, HEADS))
            block.attn.wk.weight.copy_(permute_rope_rows(block.attn.wk.weight, KV_HEADS))
        wrong = net(torch.tensor([ids]), causal_until=len(ids))[0, :, : expected.shape[1]]
    assert (wrong - expected).abs().max() > 1.0


# --- (d) tokenizer -------------------------------------------------------------------------------


def test_special_and_extra_token_ids(tokenizer, vocab):
    n = len(vocab["vocab"])
    hf = tokenizer.hf
    assert [hf.token_to_id(t) for t in CONTROL] == list(range(len(CONTROL)))
    assert [hf.token_to_id(t) for t in EXTRA] == list(range(n, n + len(EXTRA)))
    assert tokenizer.special_ids == frozenset(range(len(CONTROL))) | frozenset(range(n, n + len(EXTRA)))
    assert (tokenizer.mask_id, tokenizer.pad_id, tokenizer.eos_id, tokenizer.bos_id) == (n, n + 1, 0, None)
    assert tokenizer.stop_ids == {0, 2, n + 1}  # <|endoftext|>, the GGUF eos <|im_end|>, <|pad|>
    assert all(tokenizer.token_bytes(i) == b"" for i in tokenizer.special_ids)
    assert tokenizer.decode([tokenizer.mask_id, *tokenizer.encode("x")], skip_special=False) == "<|mask|>x"


def test_encoding_matches_the_trained_tokenizer(tokenizer, bpe):
    for text in [*set(CORPUS), *ROUND_TRIPS]:
        assert tokenizer.encode(text) == bpe.encode(text, add_special_tokens=False).ids, text


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_round_trip_and_no_special_from_text(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert b"".join(tokenizer.token_bytes(i) for i in ids) == text.encode()
    assert not set(ids) & tokenizer.special_ids
    if text:
        assert tokenizer.char_spans(ids)[-1][1] == len(text)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(list(" \t\r\n0123<|>")), max_size=80))
def test_round_trip_any_text(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text and not set(ids) & tokenizer.special_ids


def test_tokenizer_refusals(files):
    model = read_llama_gguf(files["q4"][0])
    with pytest.raises(ModelError, match="must include <\\|mask\\|>"):
        tokenizer_from_gguf(model, ["<|pad|>"])
    with pytest.raises(ModelError, match="already in the vocabulary"):
        tokenizer_from_gguf(model, ["<|mask|>", "<|im_end|>"])
    with pytest.raises(ModelError, match="repeat"):
        tokenizer_from_gguf(model, ["<|mask|>", "<|mask|>"])
    model.metadata["tokenizer.ggml.pre"] = "llama-bpe"
    with pytest.raises(ModelError, match="pre-type 'llama-bpe' is not supported"):
        tokenizer_from_gguf(model, EXTRA)


# --- (e) refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "gpt2"}, "architecture 'gpt2' is not supported"),
    ({"drop": ("llama.attention.head_count",)}, "missing GGUF key llama.attention.head_count"),
    ({"drop": ("tokenizer.ggml.merges",)}, "missing GGUF key tokenizer.ggml.merges"),
    ({"meta": {"llama.rope.dimension_count": HEAD_DIM // 2}}, "rope.dimension_count is 8, expected 16"),
    ({"meta": {"llama.feed_forward_length": 96}}, r"ffn_gate.weight has shape \(128, 64\), expected \(96, 64\)"),
    ({"meta": {"llama.block_count": 3}}, "missing tensors"),
    ({"meta": {"llama.expert_count": 8}}, "mixture-of-experts"),
    ({"meta": {"llama.rope.scaling.type": "linear"}}, "RoPE scaling 'linear'"),
    ({"meta": {"llama.context_length": 2.5}}, "context_length should be a single int"),
    ({"meta": {"llama.attention.head_count_kv": 0}}, "sizes must be positive"),
    ({"drop": ("blk.1.ffn_up.weight",)}, "missing tensors for our names blocks.1.mlp.w_up.weight"),
    ({"extra_tensors": {"rope_freqs.weight": np.ones(8, np.float32)}}, "unexpected tensor rope_freqs"),
])
def test_refuses_what_it_cannot_run(tmp_path, vocab, kwargs, message):
    weights = random_weights(len(vocab["vocab"]), tied=True)
    path = write_gguf(tmp_path / "bad.gguf", weights, vocab, quantized=False, **kwargs)
    with pytest.raises(ModelError, match=message):
        build_base(path, EXTRA)


@pytest.mark.parametrize("cut", [0, 3, 100, 0.5, -1])
def test_truncated_or_corrupt_file(tmp_path, files, cut):
    data = files["q4"][0].read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        read_llama_gguf(path)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="not a readable GGUF file"):
        read_llama_gguf(tmp_path / "junk.gguf")
    with pytest.raises(ModelError, match="not found"):
        read_llama_gguf(tmp_path / "absent.gguf")
