"""Safetensors checkpoints: sharded (Hugging Face index layout), optionally int8 with row scales.

Layout of a model directory:
  config.json, tokenizer.json,
  model.safetensors                      (one shard), or
  model-00001-of-0000N.safetensors ...   + model.safetensors.index.json
An int8-stored weight `W` [rows, cols] is saved as `W` (int8) plus `W.qscale` (float32 [rows]);
loading dequantizes `W * qscale[:, None]`. Loading checks every name, shape and dtype against the
config before anything is built, and never unpickles anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from dcode.errors import ModelError
from dcode.model.config import ModelConfig

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
SCALE_SUFFIX = ".qscale"
MAX_SHARD_BYTES = 14 * 1024 * 1024  # stays under the 15 MiB per-file limit of weights/
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of `cfg` must hold (names of our own Transformer)."""
    hd, d = cfg.head_dim, cfg.dim
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (cfg.vocab_size, d), "norm.weight": (d,)}
    if not cfg.tie_embeddings:
        shapes["head.weight"] = (cfg.vocab_size, d)
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        shapes[p + "attn_norm.weight"] = (d,)
        shapes[p + "mlp_norm.weight"] = (d,)
        shapes[p + "attn.wq.weight"] = (cfg.n_heads * hd, d)
        shapes[p + "attn.wk.weight"] = (cfg.n_kv_heads * hd, d)
        shapes[p + "attn.wv.weight"] = (cfg.n_kv_heads * hd, d)
        shapes[p + "attn.wo.weight"] = (d, cfg.n_heads * hd)
        if cfg.qkv_bias:
            shapes[p + "attn.wq.bias"] = (cfg.n_heads * hd,)
            shapes[p + "attn.wk.bias"] = (cfg.n_kv_heads * hd,)
            shapes[p + "attn.wv.bias"] = (cfg.n_kv_heads * hd,)
        shapes[p + "mlp.w_gate.weight"] = (cfg.ffn_dim, d)
        shapes[p + "mlp.w_up.weight"] = (cfg.ffn_dim, d)
        shapes[p + "mlp.w_down.weight"] = (d, cfg.ffn_dim)
    return shapes


def quantize_rowwise(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output row: w ~= q * scale[:, None]."""
    w32 = w.float()
    scale = w32.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w32 / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def _storage_tensors(state: dict[str, Tensor], cfg: ModelConfig, int8: bool, dtype: torch.dtype) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for name in expected_shapes(cfg):
        t = state[name].detach().cpu()
        if int8 and t.dim() == 2:
            out[name], out[name + SCALE_SUFFIX] = quantize_rowwise(t)
        else:
            out[name] = t.to(dtype).contiguous()
    return out


def save_checkpoint(
    model_dir: Path,
    state: dict[str, Tensor],
    cfg: ModelConfig,
    *,
    int8: bool = False,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> list[Path]:
    """Write config.json and the weights, sharded so no file exceeds `max_shard_bytes`."""
    model_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(model_dir / "config.json")
    tensors = _storage_tensors(state, cfg, int8, dtype)
    meta = {"format": "pt", "dcode_storage": "int8-rowwise" if int8 else str(dtype).removeprefix("torch.")}
    return write_shards(model_dir, tensors, meta, max_shard_bytes=max_shard_bytes)


def write_shards(
    model_dir: Path, tensors: dict[str, Tensor], meta: dict[str, str], *, stem: str = "model",
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> list[Path]:
    """`<stem>.safetensors`, or numbered shards + `<stem>.safetensors.index.json` when the tensors
    exceed `max_shard_bytes`; earlier files of the same stem are removed first."""
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    for old in list(model_dir.glob(f"{stem}*.safetensors")) + [model_dir / f"{stem}.safetensors.index.json"]:
        old.unlink(missing_ok=True)
    if len(shards) == 1:
        path = model_dir / f"{stem}.safetensors"
        save_file(shards[0], str(path), metadata=meta)
        return [path]
    paths: list[Path] = []
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, 1):
        path = model_dir / f"{stem}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path), metadata=meta)
        paths.append(path)
        weight_map.update({name: path.name for name in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total, **meta}, "weight_map": weight_map}
    (model_dir / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return paths


def shard_map(model_dir: Path, stem: str = "model") -> dict[str, Path]:
    """tensor name -> shard file, from the index if there is one, else the single file."""
    index_name, single_name = f"{stem}.safetensors.index.json", f"{stem}.safetensors"
    index_path = model_dir / index_name
    if index_path.exists():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            weight_map = index["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            raise ModelError(f"{index_path}: corrupt shard index") from None
        mapping = {name: model_dir / file for name, file in weight_map.items()}
        for path in set(mapping.values()):
            if not path.is_file():
                raise ModelError(f"{path}: shard named in {index_name} is missing")
        return mapping
    single = model_dir / single_name
    if not single.is_file():
        raise ModelError(f"{model_dir}: no {single_name} or {index_name}")
    with _open(single) as f:
        return {name: single for name in f.keys()}


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as exc:  # safetensors raises SafetensorError / OSError on corrupt files
        raise ModelError(f"{path}: corrupt or truncated safetensors file ({exc})") from None


def read_tensors(mapping: dict[str, Path]) -> dict[str, Tensor]:
    """Read every tensor of a shard map; a truncated shard is reported with its file and tensor."""
    by_file: dict[Path, list[str]] = {}
    for name, path in mapping.items():
        by_file.setdefault(path, []).append(name)
    tensors: dict[str, Tensor] = {}
    for path, names in by_file.items():
        with _open(path) as f:
            present = set(f.keys())
            for name in names:
                if name not in present:
                    raise ModelError(f"{path}: tensor {name} listed in the index is not in the file")
                try:
                    tensors[name] = f.get_tensor(name)
                except Exception as exc:
                    raise ModelError(f"{path}: cannot read tensor {name} ({exc})") from None
    return tensors


def dequantize(stored: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """Fold `W.qscale` into int8 `W`; float tensors pass through."""
    out: dict[str, Tensor] = {}
    for name, t in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if t.dtype == torch.int8:
            scale = stored.get(name + SCALE_SUFFIX)
            if scale is None or scale.shape != (t.shape[0],):
                raise ModelError(f"{source}: int8 tensor {name} has no matching {name}{SCALE_SUFFIX}")
            out[name] = t.float() * scale.float()[:, None]
        elif t.dtype in FLOAT_DTYPES:
            out[name] = t
        else:
            raise ModelError(f"{source}: tensor {name} has unsupported dtype {t.dtype}")
    return out


def validate_state(state: dict[str, Tensor], expected: dict[str, tuple[int, ...]], source: str) -> None:
    for name, shape in expected.items():
        if name not in state:
            raise ModelError(f"{source}: missing tensor {name}")
        if tuple(state[name].shape) != shape:
            raise ModelError(
                f"{source}: tensor {name} has shape {tuple(state[name].shape)}, config expects {shape}"
            )
        if not torch.isfinite(state[name].float()).all():
            raise ModelError(f"{source}: tensor {name} holds NaN or infinite values")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelError(f"{source}: unexpected tensor {extra[0]} (checkpoint does not match config)")


def load_state(model_dir: Path, cfg: ModelConfig) -> dict[str, Tensor]:
    """The validated float state dict of a dcode checkpoint directory."""
    mapping = shard_map(model_dir)
    state = dequantize(read_tensors(mapping), str(model_dir))
    validate_state(state, expected_shapes(cfg), str(model_dir))
    return state


def weights_size(model_dir: Path) -> int:
    return sum(os.path.getsize(p) for p in model_dir.glob("model*.safetensors"))
