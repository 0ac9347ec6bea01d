"""A llama-architecture GGUF file (llama.cpp's format) read into dcode's transformer and tokenizer.

`build_base` is the entry point: it turns e.g. SmolLM2-135M-Instruct.Q4_1.gguf into a
`ModelConfig`, a float32 state dict with our parameter names and a dcode `Tokenizer`, with new
special tokens (`<|mask|>`, `<|pad|>`, ...) appended to the vocabulary and embedding.

* Every size comes from the GGUF metadata (`llama.*` keys, vocabulary size from the token list);
  anything our transformer cannot run (another architecture, experts, RoPE scaling, extra
  tensors, partial rotary dimensions) is refused with a one-line ModelError.
* Tensors are dequantized one at a time with `gguf.quants.dequantize`.
* llama.cpp's converter permutes the rows of Q and K (`LlamaModel.permute`) so that its
  adjacent-pair RoPE matches HF's rotate-half RoPE; our transformer rotates halves like HF, so
  the permutation is undone (`unpermute_rope_rows`).
* The tokenizer is rebuilt as a `tokenizers` byte-level BPE from the vocabulary and merges, with
  the pre-tokenizer llama.cpp names in `tokenizer.ggml.pre`; control tokens (token type 3) are
  special added tokens at their ids.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGUFReader, GGUFValueType, TokenType
from gguf.quants import dequantize
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer
from torch import Tensor

from dcode.errors import ModelError
from dcode.model.checkpoint import expected_shapes
from dcode.model.config import ModelConfig
from dcode.model.tokenizer import EOS, MASK, PAD, Tokenizer

ARCH = "llama"
# GGUF tensor names -> ours: whole-model tensors, then the per-block ones (`blk.N.<name>.weight`).
TOP_TENSORS = {
    "token_embd.weight": "embed.weight", "output_norm.weight": "norm.weight", "output.weight": "head.weight",
}
BLOCK_TENSORS = {
    "attn_norm": "attn_norm", "attn_q": "attn.wq", "attn_k": "attn.wk", "attn_v": "attn.wv",
    "attn_output": "attn.wo", "ffn_norm": "mlp_norm", "ffn_gate": "mlp.w_gate", "ffn_up": "mlp.w_up",
    "ffn_down": "mlp.w_down",
}
IM_END = "<|im_end|>"


@dataclass
class GGUFModel:
    """What a llama GGUF holds. The config's mask/pad/eos ids are ModelConfig's defaults (a base
    model has no mask token): `build_base` sets them from the tokenizer."""

    config: ModelConfig
    state: dict[str, Tensor]  # float32, our parameter names, Q/K rows in HF (rotate-half) order
    tokens: list[str]
    merges: list[str]  # "a b"
    token_types: list[int]  # gguf.TokenType values
    bos_id: int | None
    eos_id: int | None
    unk_id: int | None
    pad_id: int | None
    metadata: dict[str, Any]  # every scalar key/value of the file (arrays left out)


# --- Q/K row order ---------------------------------------------------------------------------------


def permute_rope_rows(w: Tensor, n_head: int) -> Tensor:
    """llama.cpp's `LlamaModel.permute`: within each head, rows (first half, second half) become
    interleaved pairs, which turns rotate-half RoPE into adjacent-pair RoPE."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def unpermute_rope_rows(w: Tensor, n_head: int) -> Tensor:
    """Inverse of `permute_rope_rows`: GGUF Q/K rows back in HF order."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


# --- reading the file ------------------------------------------------------------------------------


def _open(path: Path) -> tuple[GGUFReader, dict[str, Any], dict[str, list]]:
    """The reader, the scalar metadata and the tokenizer arrays; gguf's exceptions (bad magic,
    truncated data, bad enum values, undecodable strings) become one ModelError."""
    if not path.is_file():
        raise ModelError(f"{path}: GGUF file not found")
    try:
        reader = GGUFReader(path)
        meta = {k: f.contents() for k, f in reader.fields.items() if f.types[:1] != [GGUFValueType.ARRAY]}
        arrays = {
            key: reader.fields[f"tokenizer.ggml.{key}"].contents()
            for key in ("tokens", "merges", "token_type") if f"tokenizer.ggml.{key}" in reader.fields
        }
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError, OSError) as exc:
        raise ModelError(f"{path}: not a readable GGUF file ({str(exc).splitlines()[0]})") from None
    return reader, meta, arrays


def _value(meta: dict[str, Any], key: str, kind: type, path: Path, default: Any = ...) -> Any:
    """meta[key] as an int or float; ModelError when missing (and no default) or mistyped."""
    if key not in meta:
        if default is ...:
            raise ModelError(f"{path}: missing GGUF key {key}")
        return default
    value = meta[key]
    ok = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if not ok or isinstance(value, bool):
        raise ModelError(f"{path}: GGUF key {key} should be a single {kind.__name__}, got {value!r}")
    return kind(value)


def _llama_config(meta: dict[str, Any], vocab_size: int, tied: bool, family: str, path: Path) -> ModelConfig:
    arch = meta.get("general.architecture")
    if arch != ARCH:
        raise ModelError(f"{path}: architecture {arch!r} is not supported (only llama)")
    if _value(meta, "llama.expert_count", int, path, 0):
        raise ModelError(f"{path}: mixture-of-experts llama models are not supported")
    if meta.get("llama.rope.scaling.type", "none") != "none":
        raise ModelError(f"{path}: RoPE scaling {meta['llama.rope.scaling.type']!r} is not supported")

    def get(key: str, kind: type = int, default: Any = ...) -> Any:
        return _value(meta, f"llama.{key}", kind, path, default)

    sizes = {key: get(key) for key in ("embedding_length", "block_count", "attention.head_count",
                                       "attention.head_count_kv", "feed_forward_length", "context_length")}
    if min(sizes.values()) <= 0:
        raise ModelError(f"{path}: llama sizes must be positive, got {sizes}")
    dim, n_heads = sizes["embedding_length"], sizes["attention.head_count"]
    if dim % n_heads:
        raise ModelError(f"{path}: llama.embedding_length {dim} is not a multiple of head_count {n_heads}")
    head_dim = dim // n_heads
    # llama.cpp rotates `rope.dimension_count` dims of each head (default: all); ours rotates all.
    for key, expected in (("rope.dimension_count", head_dim), ("attention.key_length", head_dim),
                          ("attention.value_length", head_dim), ("vocab_size", vocab_size)):
        value = get(key, int, expected)
        if value != expected:
            raise ModelError(f"{path}: llama.{key} is {value}, expected {expected}")
    return ModelConfig(
        vocab_size=vocab_size, dim=dim, n_layers=sizes["block_count"], n_heads=n_heads,
        n_kv_heads=sizes["attention.head_count_kv"], ffn_dim=sizes["feed_forward_length"],
        max_seq_len=sizes["context_length"], rope_theta=get("rope.freq_base", float),
        norm_eps=get("attention.layer_norm_rms_epsilon", float), tie_embeddings=tied, family=family,
    )


def _our_name(gguf_name: str) -> str | None:
    if gguf_name in TOP_TENSORS:
        return TOP_TENSORS[gguf_name]
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_name)
    if m and m[2] in BLOCK_TENSORS:
        return f"blocks.{int(m[1])}.{BLOCK_TENSORS[m[2]]}.weight"
    return None


def _read_state(reader: GGUFReader, cfg: ModelConfig, path: Path) -> dict[str, Tensor]:
    shapes = expected_shapes(cfg)
    state: dict[str, Tensor] = {}
    for t in reader.tensors:
        name = _our_name(t.name)
        if name not in shapes:
            raise ModelError(f"{path}: unexpected tensor {t.name} for a {cfg.n_layers}-block llama")
        try:
            # GGUF lists dims innermost first; the reader's array (and the result) is numpy order,
            # [out_features, in_features] for a matrix. F32/F16 results may be read-only views of
            # the mapped file: `require` copies those and leaves fresh dequantized arrays alone.
            w = torch.from_numpy(np.require(dequantize(t.data, t.tensor_type), np.float32, ["C", "W"]))
        except (NotImplementedError, ValueError) as exc:
            raise ModelError(f"{path}: cannot dequantize {t.name} ({t.tensor_type.name}: {exc})") from None
        if tuple(w.shape) != shapes[name]:
            raise ModelError(f"{path}: tensor {t.name} has shape {tuple(w.shape)}, expected {shapes[name]}")
        if name.endswith("attn.wq.weight"):
            w = unpermute_rope_rows(w, cfg.n_heads)
        elif name.endswith("attn.wk.weight"):
            w = unpermute_rope_rows(w, cfg.n_kv_heads)
        state[name] = w
    missing = sorted(set(shapes) - set(state))
    if missing:
        more = " ..." if len(missing) > 3 else ""
        raise ModelError(f"{path}: missing tensors for our names {', '.join(missing[:3])}{more}")
    return state


def read_llama_gguf(path: Path, family: str = ARCH) -> GGUFModel:
    """Config, float32 weights and tokenizer data of a llama GGUF (any ggml type gguf dequantizes)."""
    path = Path(path)
    reader, meta, arrays = _open(path)
    missing = [f"tokenizer.ggml.{k}" for k in ("tokens", "merges", "token_type") if k not in arrays]
    if missing:
        raise ModelError(f"{path}: missing GGUF key {missing[0]}")
    tokens, merges, types = arrays["tokens"], arrays["merges"], arrays["token_type"]
    if len(types) != len(tokens) or len(set(tokens)) != len(tokens):
        raise ModelError(f"{path}: the token list has duplicates or its token types do not match it")
    tied = all(t.name != "output.weight" for t in reader.tensors)
    cfg = _llama_config(meta, len(tokens), tied, family, path)
    special = {}
    for role in ("bos", "eos", "unknown", "padding"):
        tid = _value(meta, f"tokenizer.ggml.{role}_token_id", int, path, None)
        if tid is not None and not 0 <= tid < len(tokens):
            raise ModelError(f"{path}: tokenizer.ggml.{role}_token_id {tid} is outside the vocabulary")
        special[role] = tid
    return GGUFModel(
        cfg, _read_state(reader, cfg, path), tokens, merges, types,
        special["bos"], special["eos"], special["unknown"], special["padding"], meta,
    )


# --- tokenizer -------------------------------------------------------------------------------------


def _pre_tokenizer(pre: Any, source: str) -> pre_tokenizers.PreTokenizer:
    """The HF pre-tokenizer of llama.cpp's `tokenizer.ggml.pre` type."""
    if pre == "smollm":
        # LLAMA_VOCAB_PRE_TYPE_SMOLLM splits "\p{N}" then applies the GPT-2 regex; HF SmolLM2's
        # tokenizer.json spells it Digits(individual) then ByteLevel(regex, no prefix space).
        return pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    raise ModelError(f"{source}: tokenizer pre-type {pre!r} is not supported (only smollm)")


def tokenizer_from_gguf(model: GGUFModel, extra_special: Sequence[str], source: str = "GGUF") -> Tokenizer:
    """A byte-level BPE `Tokenizer` from the GGUF vocabulary, with `extra_special` appended as
    special tokens (ids len(tokens), len(tokens)+1, ...). `<|mask|>` must be among them;
    `<|pad|>` is the pad token when present (else the GGUF's padding token, else eos). The end of a
    document is `<|endoftext|>` (else the GGUF eos); the GGUF eos and `<|im_end|>` also stop."""
    tokenizer_model = model.metadata.get("tokenizer.ggml.model")
    if tokenizer_model != "gpt2":
        raise ModelError(f"{source}: tokenizer model {tokenizer_model!r} is not supported (only gpt2, byte-level BPE)")
    pre = _pre_tokenizer(model.metadata.get("tokenizer.ggml.pre"), source)
    if MASK not in extra_special:
        raise ModelError(f"{source}: the extra special tokens must include {MASK}")
    vocab = {tok: i for i, tok in enumerate(model.tokens)}
    clash = [t for i, t in enumerate(extra_special) if t in vocab or t in extra_special[:i]]
    if clash:
        raise ModelError(f"{source}: extra special tokens repeat or are already in the vocabulary: {clash}")
    pairs = [tuple(m.split(" ")) for m in model.merges]
    if any(len(p) != 2 for p in pairs):
        raise ModelError(f"{source}: a merge is not two tokens separated by one space")
    try:
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    except Exception as exc:  # tokenizers raises bare Exceptions
        raise ModelError(f"{source}: cannot build the BPE model ({str(exc).splitlines()[0]})") from None
    hf.pre_tokenizer = pre
    hf.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(model.tokens, model.token_types) if kind == TokenType.CONTROL]
    # Existing tokens keep their ids; new ones follow the vocabulary in order.
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in [*control, *extra_special]])
    ids = {t: hf.token_to_id(t) for t in extra_special}
    if list(ids.values()) != list(range(len(vocab), len(vocab) + len(ids))):
        raise ModelError(f"{source}: the extra special tokens did not get the ids after the vocabulary ({ids})")
    eos = vocab.get(EOS, model.eos_id)
    if eos is None:
        raise ModelError(f"{source}: no {EOS} token and no eos_token_id")
    pad = ids.get(PAD, model.pad_id if model.pad_id is not None else eos)
    stops = {i for i in (model.eos_id, vocab.get(IM_END)) if i is not None}
    return Tokenizer(hf, ids[MASK], pad, eos, file_id=None, stop_ids=stops, split_lines=False, bos_id=None)


# --- a dcode base model ----------------------------------------------------------------------------


def grow_embedding(embed: Tensor, n: int) -> Tensor:
    """`embed` with `n` rows appended, each the mean row: a new token starts as an average
    token rather than noise of the wrong scale."""
    return torch.cat([embed, embed.mean(dim=0, keepdim=True).expand(n, -1)])


def build_base(
    path: Path, extra_special: Sequence[str], family: str = ARCH, **config_overrides: Any
) -> tuple[ModelConfig, dict[str, Tensor], Tokenizer]:
    """Config, float32 state and tokenizer of a llama GGUF with `extra_special` tokens added
    (embedding, and an untied head, grown by mean rows). The config's mask/pad/eos ids are the
    tokenizer's; `config_overrides` (e.g. logit_shift=1) are ModelConfig fields."""
    path = Path(path)
    model = read_llama_gguf(path, family)
    tokenizer = tokenizer_from_gguf(model, extra_special, source=str(path))
    state = dict(model.state)
    for name in ("embed.weight", "head.weight"):
        if name in state:
            state[name] = grow_embedding(state[name], len(extra_special))
    fields = {
        **dataclasses.asdict(model.config), "vocab_size": tokenizer.vocab_size, "mask_id": tokenizer.mask_id,
        "pad_id": tokenizer.pad_id, "eos_id": tokenizer.eos_id, **config_overrides,
    }
    return ModelConfig.from_dict(fields, source=str(path)), state, tokenizer
