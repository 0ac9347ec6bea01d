"""Load a model directory or a named model: `load_model()` is the model layer's public entry point."""

from __future__ import annotations

import os

from dcode.errors import ModelError
from dcode.model.checkpoint import load_state
from dcode.model.config import ModelConfig, read_config_json
from dcode.model.tokenizer import Tokenizer

# Front ends import these from here, the model layer's public entry point; they live lower down so
# that the per-format loaders (adapted, foreign) import them without importing this module back.
from dcode.model.loaded import LoadedModel, build_model  # noqa: F401
from dcode.model.paths import resolve_model_dir


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
