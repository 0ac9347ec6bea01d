"""Dream and LLaDA checkpoints in their Hugging Face layout, run by our own `Transformer`.

No `transformers`, no remote code: `config.json` is mapped onto `ModelConfig` (every size read
from it; a key the reference code would silently default is required here), tensor names are
mapped onto ours, and `build_model` assembles the model. Dream gets `logit_shift=1` (its row i−1
scores token i; `LoadedModel.logits` re-aligns) and q/k/v biases.

Tokenizers: see `hf_tokenizers`. A directory without tokenizer files (the test fixtures) loads
with a `MissingTokenizer` that knows the special ids and raises ModelError only when text is
needed; `require_tokenizer=True` refuses such a directory up front.

Memory: on CUDA the need (weights plus a runtime reserve for a 2048-token canvas) is compared
with `torch.cuda.mem_get_info` before any weight is read. `int8=True` stores every matrix
(projections, embedding, head) as int8 with one scale per output row (`Int8Linear`,
`Int8Embedding`): about half the bf16 weight memory; the matmul runs in the activation dtype on a
dequantized copy of one matrix at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from dcode.errors import ModelError
from dcode.model.checkpoint import (
    INDEX_NAME, SINGLE_NAME, expected_shapes, quantize_rowwise, read_tensors, shard_map,
)
from dcode.model.config import ModelConfig
from dcode.model.device import resolve_device, resolve_dtype
from dcode.model.hf_tokenizers import (
    MissingTokenizer, SpecialIds, load_tokenizer, read_json, special_ids, tokenizer_kind,
)
from dcode.model.loaded import LoadedModel, build_model
from dcode.model.transformer import Transformer

# config.json model_type (lower-cased) -> family. Open-dCoder (fredzzp/open-dcoder-0.5B) is Dream's
# layout under Qwen2's name: the same tensors, bidirectional attention and one-position logit shift.
# A plain autoregressive Qwen2 is still refused: it has no mask token (see `special_ids`).
FAMILIES = {"dream": "dream", "qwen2": "dream", "llada": "llada"}
ESTIMATE_TOKENS = 2048  # canvas length the runtime memory reserve is sized for
DREAM_USABLE_CONTEXT = 2048
CUDA_OVERHEAD = 768 * 2**20  # CUDA context, allocator slack

# Our parameter names -> theirs: top-level names, then per-block suffixes under a block prefix.
TENSOR_NAMES = {
    "dream": (
        "model.layers.{i}.",
        {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
         "head.weight": "lm_head.weight"},
        {
            "attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
            "attn.wq": "self_attn.q_proj", "attn.wk": "self_attn.k_proj", "attn.wv": "self_attn.v_proj",
            "attn.wo": "self_attn.o_proj",
            "mlp.w_gate": "mlp.gate_proj", "mlp.w_up": "mlp.up_proj", "mlp.w_down": "mlp.down_proj",
        },
    ),
    "llada": (
        "model.transformer.blocks.{i}.",
        {"embed.weight": "model.transformer.wte.weight", "norm.weight": "model.transformer.ln_f.weight",
         "head.weight": "model.transformer.ff_out.weight"},
        {
            "attn_norm": "attn_norm", "mlp_norm": "ff_norm",
            "attn.wq": "q_proj", "attn.wk": "k_proj", "attn.wv": "v_proj", "attn.wo": "attn_out",
            "mlp.w_gate": "ff_proj", "mlp.w_up": "up_proj", "mlp.w_down": "ff_out",
        },
    ),
}
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)  # non-persistent buffers some exports still carry

# LLaDA keys where LLaDAConfig's silent default differs from what the checkpoints need, and keys
# that select features our transformer lacks (value required, or allowed values when present).
LLADA_REQUIRED = {"block_type": ("llama",), "activation_type": ("silu",), "rope": (True,),
                  "layer_norm_type": ("rms",), "include_bias": (False,)}
LLADA_OPTIONAL = {"alibi": (False,), "bias_for_layer_norm": (None, False), "layer_norm_with_affine": (True,),
                  "attention_layer_norm": (False,), "scale_logits": (False,), "input_emb_norm": (False,),
                  "block_group_size": (1,), "multi_query_attention": (None, False)}
DREAM_OPTIONAL = {"hidden_act": ("silu",), "rope_scaling": (None,), "use_sliding_window": (False,),
                  "use_mrope": (False,)}


def detect_family(raw: dict, source: str = "config.json") -> str:
    model_type = raw.get("model_type")
    family = FAMILIES.get(str(model_type).lower())
    if family is None:
        raise ModelError(f"{source}: unsupported model_type {model_type!r} "
                         "(dcode loads Dream, Open-dCoder and LLaDA checkpoints)")
    return family


def _get(raw: dict, key: str, source: str, kind: type = int):
    """A required config value: a positive int, a number (`float`) or a bool."""
    value = raw.get(key)
    if value is None:
        raise ModelError(f"{source}: missing required key {key}")
    ok = isinstance(value, bool) if kind is bool else not isinstance(value, bool) and (
        isinstance(value, (int, float)) if kind is float else isinstance(value, int) and value > 0)
    if not ok:
        expected = {bool: "true or false", float: "a number"}.get(kind, "a positive integer")
        raise ModelError(f"{source}: {key} must be {expected}, got {value!r}")
    return kind(value)


def _same(value, allowed) -> bool:
    if allowed is None or isinstance(allowed, bool):
        return value is allowed
    return type(value) is type(allowed) and value == allowed


def _check_features(raw: dict, source: str, required: dict, optional: dict) -> None:
    """Keys whose value selects a feature: each must hold a supported value (`required` ones
    must also be present, because LLaDAConfig's silent default would be wrong)."""
    for key, allowed in {**required, **optional}.items():
        if key not in raw:
            if key in required:
                raise ModelError(f"{source}: missing required key {key}")
        elif not any(_same(raw[key], a) for a in allowed):
            raise ModelError(f"{source}: {key}={raw[key]!r} is not supported (expected {allowed[0]!r})")


def foreign_config(raw: dict, family: str, ids: SpecialIds, source: str = "config.json") -> ModelConfig:
    """`ModelConfig` of a Dream/LLaDA config.json; every size and constant comes from `raw`."""
    if family == "dream":
        _check_features(raw, source, {}, DREAM_OPTIONAL)
        dims = dict(
            vocab_size=_get(raw, "vocab_size", source), dim=_get(raw, "hidden_size", source),
            n_layers=_get(raw, "num_hidden_layers", source), n_heads=_get(raw, "num_attention_heads", source),
            n_kv_heads=_get(raw, "num_key_value_heads", source), ffn_dim=_get(raw, "intermediate_size", source),
            # Dream's README gives 2048 as the usable context, far below max_position_embeddings.
            max_seq_len=min(_get(raw, "max_position_embeddings", source), DREAM_USABLE_CONTEXT),
            rope_theta=_get(raw, "rope_theta", source, float), norm_eps=_get(raw, "rms_norm_eps", source, float),
            # DreamConfig's own default is False (untied lm_head).
            tie_embeddings=_get(raw, "tie_word_embeddings", source, bool) if "tie_word_embeddings" in raw else False,
            qkv_bias=True, logit_shift=1,
        )
        if raw.get("head_dim") not in (None, dims["dim"] // dims["n_heads"]):
            raise ModelError(f"{source}: head_dim={raw['head_dim']} is not hidden_size / num_attention_heads")
    else:
        _check_features(raw, source, LLADA_REQUIRED, LLADA_OPTIONAL)
        d_model, n_heads = _get(raw, "d_model", source), _get(raw, "n_heads", source)
        if "n_kv_heads" not in raw:
            raise ModelError(f"{source}: missing required key n_kv_heads")
        n_kv = n_heads if raw["n_kv_heads"] is None else _get(raw, "n_kv_heads", source)
        if raw.get("mlp_hidden_size") is not None or "mlp_ratio" not in raw:
            ffn = _get(raw, "mlp_hidden_size", source)
        else:
            ffn = _get(raw, "mlp_ratio", source) * d_model
        vocab = _get(raw, "vocab_size", source)
        dims = dict(
            vocab_size=_get(raw, "embedding_size", source) if raw.get("embedding_size") is not None else vocab,
            dim=d_model, n_layers=_get(raw, "n_layers", source), n_heads=n_heads, n_kv_heads=n_kv, ffn_dim=ffn,
            max_seq_len=_get(raw, "max_sequence_length", source),
            rope_theta=_get(raw, "rope_theta", source, float), norm_eps=_get(raw, "rms_norm_eps", source, float),
            tie_embeddings=_get(raw, "weight_tying", source, bool),
            qkv_bias=bool(raw.get("include_qkv_bias", False)), logit_shift=0,
            rope_fp32=bool(raw.get("rope_full_precision", True)),
        )
    for key, value in (("mask_token_id", ids.mask), ("pad_token_id", ids.pad), ("eos_token_id", ids.eos)):
        if not 0 <= value < dims["vocab_size"]:
            raise ModelError(f"{source}: {key} {value} is outside the vocabulary (0..{dims['vocab_size'] - 1})")
    return ModelConfig(**dims, mask_id=ids.mask, pad_id=ids.pad, eos_id=ids.eos, family=family)


def their_name(family: str, ours: str) -> str:
    prefix, top, block = TENSOR_NAMES[family]
    if ours in top:
        return top[ours]
    _, i, rest = ours.split(".", 2)  # blocks.N.<module>.<weight|bias>
    module, leaf = rest.rsplit(".", 1)
    return prefix.format(i=i) + block[module] + "." + leaf


def tensor_plan(cfg: ModelConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """our name -> (their name, shape) for every tensor the checkpoint must hold."""
    return {ours: (their_name(cfg.family, ours), shape) for ours, shape in expected_shapes(cfg).items()}


def _check_headers(plan: dict[str, tuple[str, tuple[int, ...]]], mapping: dict[str, Path], model_dir: Path,
                   cfg: ModelConfig) -> None:
    """Names, shapes and dtypes from the safetensors headers, before any data is read."""
    wanted = {theirs: shape for theirs, shape in plan.values()}
    for theirs in wanted:
        if theirs not in mapping:
            raise ModelError(f"{model_dir}: missing tensor {theirs}")
    skip = {their_name(cfg.family, "head.weight")} if cfg.tie_embeddings else set()
    extra = sorted(n for n in mapping if n not in wanted and n not in skip and not n.endswith(IGNORED_SUFFIXES))
    if extra:
        raise ModelError(f"{mapping[extra[0]]}: unexpected tensor {extra[0]} (checkpoint does not match config.json)")
    by_file: dict[Path, list[str]] = {}
    for theirs in wanted:
        by_file.setdefault(mapping[theirs], []).append(theirs)
    for path, names in by_file.items():
        try:
            f = safe_open(str(path), framework="pt", device="cpu")
        except Exception as exc:
            raise ModelError(f"{path}: corrupt or truncated safetensors file ({exc})") from None
        with f:
            present = set(f.keys())
            for name in names:
                if name not in present:
                    raise ModelError(f"{path}: tensor {name} listed in the index is not in the file")
                sl = f.get_slice(name)
                shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
                if shape != wanted[name]:
                    raise ModelError(f"{path}: tensor {name} has shape {shape}, config.json implies {wanted[name]}")
                if dtype not in ("F32", "BF16", "F16"):
                    raise ModelError(f"{path}: tensor {name} has unsupported dtype {dtype}")


# --- memory ------------------------------------------------------------------------------------


def weight_bytes(cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16, int8: bool = False) -> int:
    """Bytes of the weights on the device: matrices int8 + one scale per row when `int8`."""
    elt = torch.finfo(dtype).bits // 8
    total = 0
    for name, shape in expected_shapes(cfg).items():
        n = 1
        for s in shape:
            n *= s
        total += n + shape[0] * elt if int8 and len(shape) == 2 else n * elt
    return total


def runtime_bytes(cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16, tokens: int = ESTIMATE_TOKENS) -> int:
    """Reserve for one forward over a `tokens`-long canvas: logits (model dtype, aligned copy and
    a float32 copy), per-layer activations, attention scores of the math SDPA path, CUDA context."""
    elt = torch.finfo(dtype).bits // 8
    t = min(tokens, cfg.max_seq_len)
    logits = t * cfg.vocab_size * (2 * elt + 4)
    acts = t * (8 * cfg.dim + 3 * cfg.ffn_dim) * elt + t * t * cfg.n_heads * 4
    return logits + acts + CUDA_OVERHEAD


def memory_need(cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16, int8: bool = False) -> int:
    need = weight_bytes(cfg, dtype, int8) + runtime_bytes(cfg, dtype)
    if int8:  # one matrix at a time is dequantized for its matmul
        need += max(cfg.vocab_size, cfg.ffn_dim) * cfg.dim * (torch.finfo(dtype).bits // 8)
    return need


def _dtype_label(dtype: torch.dtype, int8: bool) -> str:
    return "int8" if int8 else {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[dtype]


def check_memory(name: str, cfg: ModelConfig, device: torch.device, dtype: torch.dtype, int8: bool) -> None:
    """Refuse, with needed vs free memory, a model that cannot fit on the CUDA device."""
    if device.type != "cuda":
        return
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    free, _ = torch.cuda.mem_get_info(device)
    need = memory_need(cfg, dtype, int8)
    if need <= free:
        return
    hint = "; try --int8" if not int8 and memory_need(cfg, dtype, True) <= free else ""
    raise ModelError(
        f"{name} needs {need / 1e9:.1f} GB in {_dtype_label(dtype, int8)}, "
        f"{free / 1e9:.1f} GB free on {device}{hint}"
    )


# --- int8 weight-only modules --------------------------------------------------------------------


class Int8Linear(nn.Module):
    """y = (x · qᵀ) * scale + b with q int8 [out, in] and scale [out] in the activation dtype."""

    def __init__(self, qweight: Tensor, scale: Tensor, bias: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", qweight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight.to(x.dtype)) * self.scale
        return y + self.bias if self.bias is not None else y


class Int8Embedding(nn.Module):
    def __init__(self, qweight: Tensor, scale: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", qweight)
        self.register_buffer("scale", scale)

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight).to(self.scale.dtype) * self.scale[ids].unsqueeze(-1)


def _quantize_to(w: Tensor, device: torch.device, rows: int = 4096) -> tuple[Tensor, Tensor]:
    """Row-wise int8 of `w`, computed on `device` a slab of rows at a time (bounded scratch)."""
    q = torch.empty(w.shape, dtype=torch.int8, device=device)
    s = torch.empty(w.shape[0], dtype=torch.float32, device=device)
    for r in range(0, w.shape[0], rows):
        q[r:r + rows], s[r:r + rows] = quantize_rowwise(w[r:r + rows].to(device))
    return q, s


def _build_int8(cfg: ModelConfig, tokenizer, state: dict[str, Tensor], device: torch.device,
                dtype: torch.dtype, path: Path) -> LoadedModel:
    with torch.device("meta"):
        net = Transformer(cfg)
    rest: dict[str, Tensor] = {}
    for name, t in state.items():
        module, _, leaf = name.rpartition(".")
        if t.dim() == 2:
            q, s = _quantize_to(t, device)
            s = s.to(dtype)
            if module == "embed":
                net.embed = Int8Embedding(q, s)
            else:
                bias = state.get(module + ".bias")
                bias = bias.to(device=device, dtype=dtype) if bias is not None else None
                net.set_submodule(module, Int8Linear(q, s, bias))
        elif not (leaf == "bias" and state[module + ".weight"].dim() == 2):
            rest[name] = t.to(device=device, dtype=dtype)
    if cfg.tie_embeddings:
        net.head = Int8Linear(net.embed.weight, net.embed.scale)
    net.load_state_dict(rest, strict=False, assign=True)
    left = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if left:
        raise ModelError(f"{path}: no weights for {left[0]}")
    net.eval()
    return LoadedModel(net, tokenizer, cfg, device, dtype, path, family=cfg.family)


# --- entry points ------------------------------------------------------------------------------


def load_foreign(
    model_dir: str | os.PathLike,
    raw: dict,
    device: str | None = None,
    dtype: str | None = None,
    int8: bool = False,
    require_tokenizer: bool = False,
) -> LoadedModel:
    """Load a Dream/LLaDA Hugging Face directory (`raw` is its parsed config.json)."""
    model_dir = Path(model_dir)
    source = str(model_dir / "config.json")
    family = detect_family(raw, source)
    ids = special_ids(model_dir, raw)
    cfg = foreign_config(raw, family, ids, source)
    tokenizer = load_tokenizer(model_dir, family, ids, required=require_tokenizer)
    if not isinstance(tokenizer, MissingTokenizer) and tokenizer.vocab_size > cfg.vocab_size:
        raise ModelError(
            f"{model_dir}: tokenizer has {tokenizer.vocab_size} tokens, the model only {cfg.vocab_size} rows"
        )
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    plan = tensor_plan(cfg)
    mapping = shard_map(model_dir)
    _check_headers(plan, mapping, model_dir, cfg)
    check_memory(model_dir.name, cfg, dev, dt, int8)
    stored = read_tensors({theirs: mapping[theirs] for theirs, _ in plan.values()})
    state: dict[str, Tensor] = {}
    for ours, (theirs, _) in plan.items():
        t = stored.pop(theirs)
        if not torch.isfinite(t).all():
            raise ModelError(f"{mapping[theirs]}: tensor {theirs} holds NaN or infinite values")
        state[ours] = t
    if int8:
        return _build_int8(cfg, tokenizer, state, dev, dt, model_dir)
    return build_model(cfg, tokenizer, state, device=str(dev), dtype=dtype, path=model_dir)


def _checkpoint_bytes(model_dir: Path) -> int | None:
    index = read_json(model_dir / INDEX_NAME)
    if index is not None:
        size = (index.get("metadata") or {}).get("total_size")
        if isinstance(size, int):
            return size
    single = model_dir / SINGLE_NAME
    return single.stat().st_size if single.is_file() else None


def describe_model(model_dir: str | os.PathLike) -> dict:
    """What `dcode info --model PATH` prints, from config.json, the tokenizer files and the shard
    index only (no weight is read). Memory figures are bytes on a CUDA device."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    raw = read_json(config_path)
    if raw is None:
        raise ModelError(f"{model_dir}: no config.json in the model directory")
    if "model_type" in raw:
        family = detect_family(raw, str(config_path))
        ids = special_ids(model_dir, raw)
        cfg = foreign_config(raw, family, ids, str(config_path))
        special = ids.as_dict()
        tokenizer = tokenizer_kind(model_dir)
    else:
        cfg = ModelConfig.from_dict(raw, source=str(config_path))
        special = {"mask": cfg.mask_id, "pad": cfg.pad_id, "eos": cfg.eos_id, "bos": None, "expand": None,
                   "stop": sorted({cfg.pad_id, cfg.eos_id})}
        tokenizer = "tokenizer.json" if (model_dir / "tokenizer.json").is_file() else None
    return {
        "name": model_dir.name,
        "family": cfg.family,
        "model_type": raw.get("model_type", "dcode"),
        "parameters": cfg.num_parameters(),
        "context_length": cfg.max_seq_len,
        "layers": cfg.n_layers, "hidden": cfg.dim, "heads": cfg.n_heads, "kv_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim, "ffn": cfg.ffn_dim, "vocab_size": cfg.vocab_size,
        "tie_embeddings": cfg.tie_embeddings, "logit_shift": cfg.logit_shift,
        "rope_theta": cfg.rope_theta, "norm_eps": cfg.norm_eps,
        "special_ids": special,
        "tokenizer": tokenizer,
        "checkpoint_bytes": _checkpoint_bytes(model_dir),
        "weights_bf16": weight_bytes(cfg, torch.bfloat16),
        "weights_int8": weight_bytes(cfg, torch.bfloat16, int8=True),
        "memory_bf16": memory_need(cfg, torch.bfloat16),
        "memory_int8": memory_need(cfg, torch.bfloat16, int8=True),
    }
