"""The one model configuration: every size the transformer needs, saved as config.json."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from dcode.errors import ModelError


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    # Dream (Qwen2 lineage) has biases on q/k/v; our own model and LLaDA do not.
    qkv_bias: bool = False
    # Dream keeps the autoregressive convention: the output at position i-1 scores token i.
    logit_shift: int = 0
    # LLaDA rotates q and k in float32 whatever the model dtype (its `rope_full_precision`).
    rope_fp32: bool = False
    # An autoregressive base adapted to diffusion (dcode-small): the context before the hole is
    # read causally, as the base was trained, so its keys/values are exact and reusable; the
    # hole attends to everything.
    causal_context: bool = False
    # "dcode": context files, then prefix + hole + suffix in file order. "fim": the suffix goes
    # before the prefix (`<fim_suffix>` suffix `<fim_prefix>` prefix, hole last), so that the
    # prefix runs straight into the hole as in the base's pretraining.
    prompt_format: str = "dcode"
    # "diffusion": the hole is denoised in parallel passes (dcode.diffusion.sampler). "anchored":
    # a pretrained causal base (dcode-small) fills the hole from its own next-token distribution
    # and the suffix chooses the ending (dcode.diffusion.anchored).
    decoder: str = "diffusion"
    # Back off the prefix's last token and the suffix's first one, and let the hole re-cover
    # them: a byte-level BPE that merges "\n" with the next line's indentation otherwise asks
    # the model for token splits it never saw.
    token_healing: bool = False
    # Token ids the sampler needs; foreign checkpoints read theirs from their own files.
    mask_id: int = 0
    pad_id: int = 1
    eos_id: int = 2
    family: str = "dcode"

    def __post_init__(self) -> None:
        if self.prompt_format not in ("dcode", "fim"):
            raise ModelError(f"config: unknown prompt_format {self.prompt_format!r} (dcode or fim)")
        if self.decoder not in ("diffusion", "anchored"):
            raise ModelError(f"config: unknown decoder {self.decoder!r} (diffusion or anchored)")
        if self.dim % self.n_heads:
            raise ModelError(f"config: dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ModelError(
                f"config: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> None:
        path.write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict, source: str = "config.json") -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{source}: unknown config keys {', '.join(unknown)}")
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise ModelError(f"{source}: missing required config keys {', '.join(missing)}")
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        return cls.from_dict(read_config_json(path), source=str(path))

    def num_parameters(self) -> int:
        hd = self.head_dim
        attn = self.dim * self.n_heads * hd * 2 + self.dim * self.n_kv_heads * hd * 2
        if self.qkv_bias:
            attn += (self.n_heads + 2 * self.n_kv_heads) * hd
        mlp = 3 * self.dim * self.ffn_dim
        per_layer = attn + mlp + 2 * self.dim
        embed = self.vocab_size * self.dim * (1 if self.tie_embeddings else 2)
        return embed + self.n_layers * per_layer + self.dim


def read_config_json(path: Path) -> dict:
    """A model directory's config.json as a dict (any family), or a one-line ModelError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: no config.json in the model directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data
