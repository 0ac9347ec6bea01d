"""`dcode info`: what a model is and where it would run, read without loading the weights."""

from __future__ import annotations

from pathlib import Path

from dcode.model.checkpoint import weights_size
from dcode.model.config import ModelConfig, read_config_json
from dcode.model.device import resolve_device, resolve_dtype
from dcode.model.loader import resolve_model_dir


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
            "parameters": f"{cfg.num_parameters() / 1e6:.2f}M",
            "layers": cfg.n_layers,
            "dim": cfg.dim,
            "heads": f"{cfg.n_heads} (kv {cfg.n_kv_heads})",
            "context_length": cfg.max_seq_len,
            "vocab": cfg.vocab_size,
            "special_ids": f"mask {cfg.mask_id}, pad {cfg.pad_id}, eos {cfg.eos_id}",
        }
    for key in ("checkpoint_bytes", "weights_bf16", "weights_int8", "memory_bf16", "memory_int8"):
        if isinstance(facts.get(key), int):
            facts[key] = f"{facts[key] / 1e9:.2f} GB" if facts[key] >= 1e8 else f"{facts[key] / 2**20:.2f} MiB"
    return {
        "model": model_dir.name,
        "path": str(Path(model_dir).resolve()),
        **facts,
        "weights_on_disk": f"{weights_size(model_dir) / 2**20:.1f} MiB",
        "device": str(dev),
        "dtype": str(dt).removeprefix("torch."),
    }
