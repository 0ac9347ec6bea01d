"""Low-rank adapters (LoRA) on dcode's transformer: what dcode-small ships instead of a model.

An adapter holds, for every linear layer it targets, `lora_A` [r, in] and `lora_B` [out, r]
(W' = W + alpha/r * B A), plus the RMSNorm weights and the embedding rows of the tokens added to
the base vocabulary (mask, pad, FIM sentinels), all trained while the base stays frozen. At load
time it is merged into the base weights, so inference runs the plain transformer at full speed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcode.errors import ModelError
from dcode.model.checkpoint import read_tensors, shard_map, write_shards
from dcode.model.transformer import Transformer

ADAPTER_CONFIG = "adapter.json"
ADAPTER_STEM = "adapter"
ATTENTION_TARGETS = ("wq", "wk", "wv", "wo")
MLP_TARGETS = ("w_gate", "w_up", "w_down")
ADDED_ROWS = "embed.added"  # embedding rows of the tokens added to the base vocabulary


@dataclass(frozen=True)
class AdapterConfig:
    base_vocab: int  # embedding rows that come from the base; the rows after them are trained
    rank: int = 32
    alpha: float = 32.0
    targets: tuple[str, ...] = ATTENTION_TARGETS + MLP_TARGETS

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def save(self, model_dir: Path) -> None:
        data = dataclasses.asdict(self)
        data["targets"] = list(self.targets)
        (model_dir / ADAPTER_CONFIG).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, model_dir: Path) -> "AdapterConfig":
        path = model_dir / ADAPTER_CONFIG
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cfg = cls(base_vocab=int(data["base_vocab"]), rank=int(data["rank"]), alpha=float(data["alpha"]),
                      targets=tuple(data["targets"]))
        except FileNotFoundError:
            raise ModelError(f"{model_dir}: no {ADAPTER_CONFIG}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a valid adapter config ({exc})") from None
        unknown = set(cfg.targets) - set(ATTENTION_TARGETS + MLP_TARGETS)
        if unknown or cfg.rank < 1:
            raise ModelError(f"{path}: bad rank or targets ({', '.join(sorted(unknown)) or cfg.rank})")
        return cfg


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update (B starts at zero: no change)."""

    def __init__(self, base: nn.Linear, rank: int, scale: float) -> None:
        super().__init__()
        self.base = base
        self.scale = scale
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(x, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype))
        return self.base(x) + update * self.scale


def _parent(block: nn.Module, target: str) -> nn.Module:
    return block.attn if target in ATTENTION_TARGETS else block.mlp


def attach(net: Transformer, cfg: AdapterConfig) -> list[nn.Parameter]:
    """Freeze the base, wrap the targeted linears, and return what trains: the LoRA matrices,
    the norms, and the embedding (whose gradient is kept to the added rows only)."""
    for p in net.parameters():
        p.requires_grad_(False)
    for block in net.blocks:
        for target in cfg.targets:
            parent = _parent(block, target)
            setattr(parent, target, LoRALinear(getattr(parent, target), cfg.rank, cfg.scale))
    trainable = [p for n, p in net.named_parameters() if "lora_" in n]
    norms = [p for n, p in net.named_parameters() if n.endswith("norm.weight")]
    for p in norms:
        p.requires_grad_(True)
    embed = net.embed.weight
    embed.requires_grad_(True)
    added = torch.zeros(embed.shape[0], 1, device=embed.device, dtype=embed.dtype)
    added[cfg.base_vocab :] = 1
    # Tied head and embedding share this tensor: both gradients reach the hook, and only the
    # added tokens' rows keep theirs.
    embed.register_hook(lambda grad: grad * added)
    return trainable + norms + [embed]


def adapter_tensors(net: Transformer, cfg: AdapterConfig) -> dict[str, Tensor]:
    """What an adapter file holds, from a net prepared by `attach` (detached, on the CPU)."""
    out: dict[str, Tensor] = {}
    for name, p in net.named_parameters():
        if "lora_" in name:
            out[name.replace(".base", "")] = p
        elif name.endswith("norm.weight"):
            out[name] = p
    out[ADDED_ROWS] = net.embed.weight[cfg.base_vocab :]
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}


def save_adapter(model_dir: Path, tensors: dict[str, Tensor], cfg: AdapterConfig) -> list[Path]:
    """adapter.json + bf16 safetensors shards, each under weights/' 15 MiB limit."""
    model_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(model_dir)
    stored = {k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}
    return write_shards(model_dir, stored, {"format": "pt", "dcode_storage": "lora-bf16"}, stem=ADAPTER_STEM)


def load_adapter(model_dir: Path) -> tuple[AdapterConfig, dict[str, Tensor]]:
    cfg = AdapterConfig.load(model_dir)
    tensors = read_tensors(shard_map(model_dir, stem=ADAPTER_STEM))
    return cfg, {k: v.float() for k, v in tensors.items()}


def merge(state: dict[str, Tensor], adapter: dict[str, Tensor], cfg: AdapterConfig, n_layers: int) -> dict[str, Tensor]:
    """The base state (dcode names, float) with the adapter folded in; every tensor the adapter
    should hold is checked, so a mismatched or partial adapter is a one-line ModelError."""
    out = dict(state)
    used: set[str] = set()

    def take(name: str, shape: tuple[int, ...]) -> Tensor:
        t = adapter.get(name)
        if t is None:
            raise ModelError(f"adapter: missing tensor {name}")
        if tuple(t.shape) != shape:
            raise ModelError(f"adapter: tensor {name} has shape {tuple(t.shape)}, the base needs {shape}")
        used.add(name)
        return t

    for i in range(n_layers):
        for target in cfg.targets:
            module = "attn" if target in ATTENTION_TARGETS else "mlp"
            key = f"blocks.{i}.{module}.{target}"
            w = state[f"{key}.weight"]
            a = take(f"{key}.lora_A", (cfg.rank, w.shape[1]))
            b = take(f"{key}.lora_B", (w.shape[0], cfg.rank))
            out[f"{key}.weight"] = (w.float() + cfg.scale * (b @ a)).to(w.dtype)
        for norm in ("attn_norm", "mlp_norm"):
            name = f"blocks.{i}.{norm}.weight"
            out[name] = take(name, tuple(state[name].shape)).to(state[name].dtype)
    out["norm.weight"] = take("norm.weight", tuple(state["norm.weight"].shape))
    embed = state["embed.weight"]
    rows = take(ADDED_ROWS, (embed.shape[0] - cfg.base_vocab, embed.shape[1]))
    out["embed.weight"] = torch.cat([embed[: cfg.base_vocab], rows.to(embed.dtype)])
    extra = sorted(set(adapter) - used)
    if extra:
        raise ModelError(f"adapter: unexpected tensor {extra[0]} (adapter does not match its config)")
    if not all(torch.isfinite(t).all() for t in adapter.values()):
        raise ModelError("adapter: holds NaN or infinite values")
    return out
