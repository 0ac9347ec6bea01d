"""Find, load and describe models: `load_model()` is the public entry point."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dcode.errors import ModelError
from dcode.model.checkpoint import load_state
from dcode.model.config import ModelConfig, read_config_json
from dcode.model.device import resolve_device, resolve_dtype
from dcode.model.tokenizer import Tokenizer
from dcode.model.transformer import PrefixCache, Transformer

DEFAULT_MODEL_NAME = "dcode-mini"


def shipped_weights_root() -> Path | None:
    """`weights/` of a checkout, or the `dcode/_weights` package data of an installed wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_weights", package.parent / "weights"):
        if candidate.is_dir():
            return candidate
    return None


def default_model_dir() -> Path:
    root = shipped_weights_root()
    if root is None or not (root / DEFAULT_MODEL_NAME / "config.json").is_file():
        raise ModelError(
            f"the shipped model {DEFAULT_MODEL_NAME} was not found (looked in weights/ and dcode/_weights); "
            "pass --model PATH or set DCODE_MODEL"
        )
    return root / DEFAULT_MODEL_NAME


def resolve_model_dir(path: str | os.PathLike | None) -> Path:
    """An explicit path, else $DCODE_MODEL, else the shipped default. A plain name is a shipped
    model (dcode-small) or one `dcode pull` fetched (dream-coder, or a repository's name)."""
    if path is None:
        path = os.environ.get("DCODE_MODEL") or None
    if path is None:
        return default_model_dir()
    model_dir = Path(path).expanduser()
    if not model_dir.is_dir():
        from dcode.model.hub import not_pulled_hint, pulled_dir  # no torch, no huggingface_hub

        name = str(path)
        shipped = shipped_weights_root()
        if shipped is not None and name and "/" not in name and (shipped / name).is_dir():
            return shipped / name  # a shipped model by name, e.g. dcode-small
        pulled = pulled_dir(name)
        if pulled is not None:
            return pulled
        raise ModelError(not_pulled_hint(name) or f"{model_dir}: model directory not found")
    return model_dir


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


def load_model(
    path: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str | None = None,
    int8: bool = False,
) -> LoadedModel:
    """Load a model directory (dcode's own format, an adapted base such as dcode-small, or a
    Dream/LLaDA Hugging Face directory); a shipped model may be named instead (`dcode-small`).

    `path=None` means $DCODE_MODEL, else the shipped default model. `int8` keeps a Dream/LLaDA
    model's matrices in int8 on the device (about half the bf16 memory, for smaller GPUs).
    """
    model_dir = resolve_model_dir(path)
    config_path = model_dir / "config.json"
    raw = read_config_json(config_path)
    if (model_dir / "base.json").is_file():
        from dcode.model.adapted import load_adapted

        if int8:
            raise ModelError(f"{model_dir}: --int8 applies to Dream/LLaDA checkpoints")
        return load_adapted(model_dir, device=device, dtype=dtype)
    if "model_type" in raw:
        from dcode.model.foreign import load_foreign

        return load_foreign(model_dir, raw, device=device, dtype=dtype, int8=int8)
    if int8:
        raise ModelError(f"{model_dir}: --int8 applies to Dream/LLaDA checkpoints; dcode's own models are already small")
    cfg = ModelConfig.from_dict(raw, source=str(config_path))
    tokenizer = Tokenizer.load(model_dir / "tokenizer.json")
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ModelError(
            f"{model_dir}: tokenizer has {tokenizer.vocab_size} tokens, model only {cfg.vocab_size}"
        )
    state = load_state(model_dir, cfg)
    return build_model(cfg, tokenizer, state, device=device, dtype=dtype, path=model_dir)
