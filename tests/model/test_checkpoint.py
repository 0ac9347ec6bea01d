"""Checkpoints: sharded and int8 round trips; corrupt, truncated and mismatched files refused."""

from __future__ import annotations

import json

import pytest
import torch

from dcode.errors import ModelError
from dcode.model.checkpoint import INDEX_NAME, save_checkpoint
from dcode.model.loader import build_model, load_model
from tests.conftest import tiny_config


def _save(model, tok, path, **kwargs):
    paths = save_checkpoint(path, model.net.state_dict(), model.config, **kwargs)
    tok.save(path / "tokenizer.json")
    return paths


@pytest.fixture
def untied(tiny_tokenizer):
    return build_model(tiny_config(tiny_tokenizer, tie_embeddings=False), tiny_tokenizer, seed=3)


def test_sharded_float32_round_trip_is_exact(untied, tiny_tokenizer, tmp_path):
    paths = _save(untied, tiny_tokenizer, tmp_path, dtype=torch.float32, max_shard_bytes=50_000)
    assert len(paths) > 1 and (tmp_path / INDEX_NAME).is_file()
    # a shard may exceed the limit only by its small JSON header
    assert all(p.stat().st_size < 50_000 + 4096 for p in paths)
    loaded = load_model(tmp_path, device="cpu")
    ids = torch.randint(0, 300, (1, 16))
    assert torch.equal(loaded.logits(ids), untied.logits(ids))


def test_int8_round_trip_is_close_and_smaller(untied, tiny_tokenizer, tmp_path):
    full, small = tmp_path / "f32", tmp_path / "int8"
    _save(untied, tiny_tokenizer, full, dtype=torch.float32)
    _save(untied, tiny_tokenizer, small, int8=True)
    size = lambda d: sum(p.stat().st_size for p in d.glob("*.safetensors"))  # noqa: E731
    assert size(small) < size(full) / 3
    loaded = load_model(small, device="cpu")
    for name, w in untied.net.state_dict().items():
        got = loaded.net.state_dict()[name]
        # per-row scale: error at most half a quantisation step of that row
        step = w.abs().amax(dim=-1, keepdim=True) / 127 if w.dim() == 2 else 0
        assert torch.all((got - w).abs() <= step / 2 + 1e-6), name


def test_tied_checkpoint_stores_embedding_once(tiny_model, tiny_tokenizer, tmp_path):
    _save(tiny_model, tiny_tokenizer, tmp_path, dtype=torch.float32)
    loaded = load_model(tmp_path, device="cpu")
    assert loaded.net.head.weight is loaded.net.embed.weight
    ids = torch.randint(0, 300, (1, 9))
    assert torch.equal(loaded.logits(ids), tiny_model.logits(ids))


def _one_line(err: ModelError) -> str:
    msg = str(err)
    assert "\n" not in msg
    return msg


def test_truncated_shard_is_refused(untied, tiny_tokenizer, tmp_path):
    paths = _save(untied, tiny_tokenizer, tmp_path, dtype=torch.float32, max_shard_bytes=16_000)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as err:
        load_model(tmp_path, device="cpu")
    assert paths[1].name in _one_line(err.value)


def test_garbage_file_is_refused(untied, tiny_tokenizer, tmp_path):
    (path,) = _save(untied, tiny_tokenizer, tmp_path, dtype=torch.float32)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="corrupt or truncated"):
        load_model(tmp_path, device="cpu")


def test_mismatched_config_names_the_tensor(untied, tiny_tokenizer, tmp_path):
    _save(untied, tiny_tokenizer, tmp_path, dtype=torch.float32)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["ffn_dim"] = 96
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError) as err:
        load_model(tmp_path, device="cpu")
    assert "mlp.w_gate.weight" in _one_line(err.value) and "shape" in str(err.value)


def test_missing_tensor_and_missing_shard(untied, tiny_tokenizer, tmp_path):
    paths = _save(untied, tiny_tokenizer, tmp_path, dtype=torch.float32, max_shard_bytes=16_000)
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    dropped = next(iter(index["weight_map"]))
    del index["weight_map"][dropped]
    (tmp_path / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ModelError, match=f"missing tensor {dropped}"):
        load_model(tmp_path, device="cpu")
    paths[-1].unlink()
    with pytest.raises(ModelError, match="is missing"):
        load_model(tmp_path, device="cpu")


def test_unknown_and_missing_config_keys(untied, tiny_tokenizer, tmp_path):
    _save(untied, tiny_tokenizer, tmp_path, dtype=torch.float32)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "n_experts": 8}))
    with pytest.raises(ModelError, match="unknown config keys n_experts"):
        load_model(tmp_path, device="cpu")
    del cfg["dim"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="missing required config keys dim"):
        load_model(tmp_path, device="cpu")


def test_missing_directory_and_tokenizer(untied, tiny_tokenizer, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope")
    _save(untied, tiny_tokenizer, tmp_path, dtype=torch.float32)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="tokenizer"):
        load_model(tmp_path, device="cpu")
