"""Training: the corruption mix, the loss going down on a tiny corpus, exact resume, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dcode.errors import InputError
from dcode.model.loader import load_model
from dcode.model.tokenizer import Tokenizer
from dcode.train.corpus import CorpusOptions, build_corpus
from dcode.train.export import CardInputs, export_model, write_model_card
from dcode.train.objective import MixConfig, TokenInfo, corrupt, line_starts, make_hole, masked_logits
from dcode.train.run import TrainConfig, bf16_peak, device_peak, load_training_checkpoint, train

from test_corpus import make_dist, module_source


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    site = root / "site-packages"
    site.mkdir()
    for name in ("alpha", "beta", "gamma", "delta"):
        make_dist(site, name, "License-Expression: Apache-2.0", {f"{name}/__init__.py": module_source(name, 60)})
    out = root / "corpus"
    # val_fraction 0.5 over four packages: the split test in test_corpus covers which goes where.
    build_corpus(out, CorpusOptions(roots=[site], val_fraction=0.5, vocab_size=400, workers=1), log=lambda s: None)
    return out


def tiny_cfg(corpus: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data_dir=str(corpus), out_dir=str(out), dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64,
                seq_len=64, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=1000, save_every=1000,
                log_every=1000, eval_batches=2, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_hole_inserts_pads_after_whole_lines(corpus: Path) -> None:
    tok = Tokenizer.load(corpus / "tokenizer.json")
    info = TokenInfo.from_tokenizer(tok)
    row = torch.tensor(tok.encode(module_source("zeta", 10)))[:120]
    gen = torch.Generator().manual_seed(0)
    seen_pads = False
    for _ in range(40):
        new, span = make_hole(row, info, MixConfig(), gen)
        idx = torch.nonzero(span).flatten()
        s, e = int(idx[0]), int(idx[-1]) + 1
        assert new.numel() == row.numel()
        assert torch.equal(new[:s], row[:s])  # clean prefix untouched
        assert s in line_starts(row, info).tolist()  # the hole starts on a line start
        pads = int((new[s:e] == tok.pad_id).sum())
        content = new[s : e - pads] if pads else new[s:e]
        assert not (content == tok.pad_id).any()  # pads only at the end of the hole
        seen_pads |= pads > 0
        if e < row.numel():
            # What follows the hole + pads is the original text right after the cut lines.
            n = e - s - pads
            assert tok.token_bytes(int(content[-1])).endswith(b"\n") or n == 0
            assert torch.equal(new[e:], row[s + n : s + n + row.numel() - e])
    assert seen_pads


def test_corrupt_masks_only_where_the_loss_is(corpus: Path) -> None:
    tok = Tokenizer.load(corpus / "tokenizer.json")
    info = TokenInfo.from_tokenizer(tok)
    ids = torch.tensor(tok.encode(module_source("eta", 40)))[: 16 * 64].view(16, 64)
    batch = corrupt(ids, info, MixConfig(), torch.Generator().manual_seed(1))
    masked = batch.inputs == tok.mask_id
    assert torch.equal(masked, batch.weights > 0)
    assert (batch.inputs[~masked] == batch.targets[~masked]).all()
    assert masked.any(dim=1).all()  # every row teaches something
    assert set(batch.kind.tolist()) <= {0, 1, 2} and len(set(batch.kind.tolist())) > 1
    # Fully masked holes and MDLM rows carry weight 1/t >= 1.
    assert (batch.weights[masked] >= 1).all()


def test_masked_logits_match_full_forward(tiny_model) -> None:
    tok = tiny_model.tokenizer
    ids = torch.tensor([tok.encode("def add(a, b):\n    return a + b\n")])
    sel = torch.zeros_like(ids, dtype=torch.bool)
    sel[0, 2::3] = True
    full = tiny_model.net(ids)[sel]
    assert torch.allclose(masked_logits(tiny_model.net, ids, sel), full, atol=1e-5)


def test_a_few_steps_lower_the_loss(corpus: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(corpus, tmp_path / "run", max_steps=40)
    train(cfg, log=lambda s: None)
    records = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert val, "the final validation loss was logged"
    # Compare against the untrained model on the same fixed validation batches.
    cfg0 = tiny_cfg(corpus, tmp_path / "run0", max_steps=0)
    train(cfg0, log=lambda s: None)
    val0 = [json.loads(l)["val_loss"] for l in (tmp_path / "run0" / "metrics.jsonl").read_text().splitlines() if "val_loss" in l]
    assert val[-1] < 0.8 * val0[-1]


def test_resume_continues_from_the_saved_step(corpus: Path, tmp_path: Path) -> None:
    full = train(tiny_cfg(corpus, tmp_path / "full", max_steps=6), log=lambda s: None)
    first = train(tiny_cfg(corpus, tmp_path / "split", max_steps=3, schedule_steps=6), log=lambda s: None)
    assert first.step == 3
    resumed = train(tiny_cfg(corpus, tmp_path / "split", max_steps=6), resume=True, log=lambda s: None)
    assert resumed.step == 6 and resumed.tokens_seen == full.tokens_seen
    a = load_training_checkpoint(tmp_path / "full")["model"]
    b = load_training_checkpoint(tmp_path / "split")["model"]
    # Same batches, same corruption, same optimizer state: the same weights as an unbroken run.
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_export_loads_as_a_model(corpus: Path, tmp_path: Path) -> None:
    train(tiny_cfg(corpus, tmp_path / "run", max_steps=2), log=lambda s: None)
    meta = export_model(tmp_path / "run", corpus, tmp_path / "model", int8=True)
    model = load_model(tmp_path / "model", device="cpu")
    assert model.config.num_parameters() == meta["parameters"]
    heldout = json.loads((tmp_path / "model" / "heldout.json").read_text())["packages"]
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert heldout == sorted(m["name"] for m in manifest if m.get("split") == "val")
    files = json.loads((tmp_path / "model" / "heldout.json").read_text())["files"]
    assert sorted(files) == heldout and all(files[n] for n in heldout)
    ids = model.tokenizer.encode("def f():\n")
    assert model.logits(ids).shape == (1, len(ids), model.config.vocab_size)


def final_val(run: Path) -> float:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in records if "val_loss" in r][-1]


def test_init_starts_from_an_exported_model_and_checks_its_tokenizer(corpus: Path, tmp_path: Path) -> None:
    train(tiny_cfg(corpus, tmp_path / "run", max_steps=40), log=lambda s: None)
    export_model(tmp_path / "run", corpus, tmp_path / "model", int8=False)
    train(tiny_cfg(corpus, tmp_path / "fresh", max_steps=0), log=lambda s: None)
    # No step taken: the validation loss is the exported model's, and its shape wins over the flags.
    state = train(tiny_cfg(corpus, tmp_path / "tuned", max_steps=0, dim=64, init=str(tmp_path / "model")),
                  log=lambda s: None)
    assert state.step == 0
    assert abs(final_val(tmp_path / "tuned") - final_val(tmp_path / "run")) < 0.05
    assert final_val(tmp_path / "tuned") < 0.8 * final_val(tmp_path / "fresh")
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["dim"] == 32

    other = tmp_path / "other-corpus"  # same sources, a tokenizer of its own
    build_corpus(other, CorpusOptions(roots=[corpus.parent / "site-packages"], val_fraction=0.5, vocab_size=300, workers=1),
                 log=lambda s: None)
    with pytest.raises(InputError, match="--tokenizer"):
        train(tiny_cfg(other, tmp_path / "mismatch", max_steps=1, init=str(tmp_path / "model")), log=lambda s: None)
    with pytest.raises(InputError, match="context"):
        train(tiny_cfg(corpus, tmp_path / "long", max_steps=1, seq_len=128, init=str(tmp_path / "model")),
              log=lambda s: None)


def test_a_fine_tuned_export_records_what_it_started_from(corpus: Path, tmp_path: Path) -> None:
    first = train(tiny_cfg(corpus, tmp_path / "run", max_steps=4), log=lambda s: None)
    export_model(tmp_path / "run", corpus, tmp_path / "base")
    second = train(tiny_cfg(corpus, tmp_path / "tuned", max_steps=3, init=str(tmp_path / "base")), log=lambda s: None)
    # The starting model was read when training began: replacing it (shipping the new version
    # under the same name) before the export changes nothing.
    (tmp_path / "base" / "training.json").write_text('{"state": {"step": 999, "tokens_seen": 1, "elapsed_s": 1}}')
    meta = export_model(tmp_path / "tuned", corpus, tmp_path / "tuned-model")
    assert meta["started_from"]["model"] == "base"
    assert meta["total"]["step"] == first.step + second.step == 7
    assert meta["total"]["tokens_seen"] == first.tokens_seen + second.tokens_seen
    card = write_model_card(CardInputs(tmp_path / "tuned-model", None, "eval", "train", "corpus", "export")).read_text()
    assert f"**7 steps, {first.tokens_seen + second.tokens_seen:,} tokens seen**" in card
    assert "4 steps" in card and "as base, then this run" in card and "(3 steps" in card
    export_model(tmp_path / "run", corpus, tmp_path / "base")
    base_card = write_model_card(CardInputs(tmp_path / "base", None, "eval", "train", "corpus", "export")).read_text()
    assert f"**4 steps, {first.tokens_seen:,} tokens seen**" in base_card and "this run" not in base_card


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H200", 989), ("NVIDIA H100 80GB HBM3", 989), ("NVIDIA H100 PCIe", 756), ("NVIDIA A100-SXM4-80GB", 312),
    ("NVIDIA A10", 125), ("NVIDIA L40S", 362), ("NVIDIA L4", 121), ("NVIDIA GeForce RTX 4090", 165),
])
def test_mfu_is_measured_against_the_devices_dense_bf16_peak(name, tflops):
    peak = bf16_peak(name)
    assert peak.flops == tflops * 1e12
    assert peak.note.startswith(f"MFU against {name}'s dense bf16 peak, {tflops} TFLOPS (")


@pytest.mark.parametrize("name", ["Tesla V100-SXM2-16GB", "Tesla T4", "NVIDIA A10G", "NVIDIA B200"])
def test_no_mfu_without_a_known_bf16_peak(name):
    """A V100's 125 TFLOPS and a T4's 65 are fp16 figures (they have no bf16 tensor cores): no MFU
    rather than one against another precision's peak; an unknown GPU, or a name that only
    contains a known one (A10G is not an A10), gets none either."""
    peak = bf16_peak(name)
    assert peak.flops is None and peak.note == f"no MFU: no dense bf16 peak known for {name}"


def test_no_mfu_on_a_cpu():
    assert device_peak(torch.device("cpu")).flops is None

