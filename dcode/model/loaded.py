"""A model ready to run: `LoadedModel` (transformer, tokenizer, device) and `build_model`, which
puts a transformer on a device. Every loader (dcode's own, adapted bases, Dream/LLaDA) ends here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dcode.model.config import ModelConfig
from dcode.model.device import resolve_device, resolve_dtype
from dcode.model.tokenizer import Tokenizer
from dcode.model.transformer import PrefixCache, Transformer


@dataclass
class LoadedModel:
    """A model ready to run: the transformer, its tokenizer, and where/how it runs."""

    net: Transformer
    tokenizer: Tokenizer
    config: ModelConfig
    device: torch.device
    dtype: torch.dtype
    path: Path | None
    family: str = "dcode"
    # A causal-context model's last context (see PrefixCache), reused by the next request.
    prefix_cache: PrefixCache = field(default_factory=PrefixCache)
    # An anchored model (config.decoder == "anchored"): `net` is the unmodified base, which reads
    # every clean token; the drafter (the base with the adapter merged) reads only masked slots.
    drafter: Transformer | None = None

    @property
    def name(self) -> str:
        return self.path.name if self.path else "in-memory"

    @property
    def num_parameters(self) -> int:
        return self.config.num_parameters()

    @torch.inference_mode()
    def logits(self, input_ids: Tensor | list[int] | list[list[int]]) -> Tensor:
        """[B, T, V] float logits where row i is the distribution for the token at position i
        (a family's one-position shift, like Dream's, is applied here)."""
        ids = torch.as_tensor(input_ids, dtype=torch.long, device=self.device)
        if ids.dim() == 1:
            ids = ids[None]
        return align_logits(self.net(ids), self.config.logit_shift).float()


def align_logits(raw: Tensor, shift: int) -> Tensor:
    """Rows of a shifted model's output moved so row i scores token i; row 0 repeats raw row 0."""
    if shift == 0:
        return raw
    return torch.cat([raw[:, :shift], raw[:, :-shift]], dim=1)


def build_model(
    cfg: ModelConfig,
    tokenizer: Tokenizer,
    state: dict[str, Tensor] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    path: Path | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Put a transformer of `cfg` on the chosen device: from `state`, or freshly initialised."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if state is None:
        net = Transformer(cfg)
        net.init_weights(seed)
        net.to(device=dev, dtype=dt)
    else:
        # Build on the meta device and assign the loaded tensors: no second full-size copy.
        with torch.device("meta"):
            net = Transformer(cfg)
        state = {name: t.to(device=dev, dtype=dt) for name, t in state.items()}
        if cfg.tie_embeddings:
            state["head.weight"] = state["embed.weight"]
        net.load_state_dict(state, strict=True, assign=True)
        if cfg.tie_embeddings:
            net.head.weight = net.embed.weight
    net.eval()
    return LoadedModel(net, tokenizer, cfg, dev, dt, path, family=cfg.family)
