"""dcode-small on a tiny stand-in: a tiny llama GGUF in a wheel, pulled into a cache, with a
LoRA adapter. Loading and merging, the FIM prompt and token healing, exact causal-context
decoding with the prefix cache, the adaptation trainer, and the left-to-right baseline."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from dcode.bench.decoding import complete_row
from dcode.diffusion.anchored import anchored_infill, block_ended
from dcode.diffusion.engine import Completion, fim_prompt, infill, infill_stream, refine
from dcode.diffusion.sampler import Canvas, DecodeOptions, HoleState, LogitSource, constrain_first
from dcode.errors import InputError, ModelError
from dcode.model.adapted import load_adapted
from dcode.model.base import BaseManifest
from dcode.model.loader import load_model
from dcode.model.lora import load_adapter
from dcode.model.transformer import PrefixCache
from dcode.train.adapt import AdaptConfig, adapt, cut_hole, make_example
from dcode.sources.packages import SourceFile
from dcode.train.gpu import join_base, send_out, split_base

def run_dcode(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dcode", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


pytestmark = pytest.mark.usefixtures("cache_env")

PREFIX = "def area(w, h):\n    if w < 0:\n        raise ValueError('w')\n"
SUFFIX = "    return w * h\n\n\nprint(area(2, 3))\n"


# --- loading -----------------------------------------------------------------------------------


def test_loaded_model_is_the_base_with_the_adapter_merged(small, model):
    ids = torch.randint(0, small.cfg.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = small.net(ids, causal_until=25)
        got = model.net(ids, causal_until=25)
        base = load_adapted(small.dir, device="cpu", dtype="float32", adapter=False).net(ids, causal_until=25)
    assert (got - expected).abs().max() < 2e-3  # float32 rounding of W + BA vs Wx + B(Ax)
    assert not torch.allclose(base, expected, atol=1e-2)  # the adapter does change the model
    assert model.config.family == "dcode-small" and model.config.logit_shift == 1
    assert model.tokenizer.file_id == model.tokenizer.token_id("<file_sep>")


def test_without_its_base_the_model_names_dcode_pull(small, tmp_path, monkeypatch):
    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(ModelError) as err:
        load_model(small.dir)
    assert "run `dcode pull tiny-small`" in str(err.value) and err.value.exit_code == 3
    (tmp_path / "m.py").write_text(PREFIX + "    # dcode: fill\n" + SUFFIX)
    result = run_dcode("--model", str(small.dir), "fill", "m.py", "--yes", cwd=tmp_path)
    assert result.returncode == 3 and "dcode pull tiny-small" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_mismatched_adapter_or_config_is_refused(small, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(small.dir, bad)
    data = json.loads((bad / "adapter.json").read_text())
    (bad / "adapter.json").write_text(json.dumps({**data, "rank": 8}))
    with pytest.raises(ModelError, match="lora_A has shape"):
        load_model(bad, device="cpu")
    shutil.copy(small.dir / "adapter.json", bad / "adapter.json")
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "ffn_dim": cfg["ffn_dim"] * 2}))
    with pytest.raises(ModelError, match="does not match its base"):
        load_model(bad, device="cpu")


# --- prompt, healing, decoding -------------------------------------------------------------------


def test_fim_prompt_puts_the_suffix_first_and_heals_both_ends(small):
    tok = small.tok
    prompt = fim_prompt(tok, PREFIX, SUFFIX, "m.py", (), 200, healing=True)
    pre, suf = tok.encode(PREFIX), tok.encode(SUFFIX)
    assert prompt.before == ([tok.token_id("<fim_suffix>")] + suf[1:] + [tok.token_id("<fim_prefix>")]
                             + tok.encode_file_header("m.py") + pre[:-1])
    assert prompt.after == []
    assert (prompt.lead, prompt.trail) == (tok.decode(pre[-1:]), tok.decode(suf[:1]))
    plain = fim_prompt(tok, PREFIX, SUFFIX, "m.py", (), 200, healing=False)
    assert (plain.lead, plain.trail) == ("", "") and plain.before[-1] == pre[-1]
    # Short of room: the far ends go, the text next to the hole stays.
    short = fim_prompt(tok, PREFIX, SUFFIX, "m.py", (("other.py", "x = 1\n" * 50),), 30, healing=True)
    assert len(short.before) <= 30 and short.before[-1] == pre[-2]


def test_constrain_first_only_touches_the_first_slot():
    logits = torch.zeros(3, 6)
    out = constrain_first(logits, torch.tensor([0, 1, 2]), torch.tensor([2, 4]))
    assert torch.isinf(out[0]).tolist() == [True, True, False, True, False, True]
    assert not torch.isinf(out[1:]).any()


def test_the_causal_context_path_gives_the_exact_logits(model):
    tok = model.tokenizer
    before = tok.encode(PREFIX)
    canvas = Canvas.build(before, [tok.mask_id] * 12, [], tok.mask_id, "cpu")
    canvas.tokens[len(before) + 3] = tok.encode("x")[0]
    wanted = torch.arange(canvas.hole_start, canvas.hole_end)
    block = wanted.clone()
    exact = LogitSource(model, use_cache=False, causal_until=canvas.hole_start)(canvas.tokens, block, wanted)
    model.prefix_cache = PrefixCache()
    cached = LogitSource(model, use_cache=True, causal_until=canvas.hole_start)
    assert torch.allclose(cached(canvas.tokens, block, wanted), exact, atol=1e-4)
    assert torch.allclose(cached(canvas.tokens, block, wanted), exact, atol=1e-4)
    assert model.prefix_cache.reused == len(before)  # the second pass read the context from the cache


def test_the_prefix_cache_reuses_a_shared_prefix_exactly(model):
    ids = torch.tensor(model.tokenizer.encode(PREFIX + SUFFIX))
    other = ids.clone()
    other[30:] = model.tokenizer.encode("y")[0]
    cache = PrefixCache()
    with torch.inference_mode():
        cache.read(model.net, ids)
        kv, last = cache.read(model.net, other)
        fresh_kv, fresh_last = PrefixCache().read(model.net, other)
    assert cache.reused == 30
    assert torch.allclose(last, fresh_last, atol=1e-4)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(kv.keys, fresh_kv.keys))


def test_a_healed_fill_starts_with_the_backed_off_text_and_returns_without_it(model):
    tok = model.tokenizer
    prompt = fim_prompt(tok, PREFIX, SUFFIX, "m.py", (), 200, healing=True)
    allowed = set(tok.extending(prompt.lead.encode()))
    states = list(infill_stream(model, PREFIX, SUFFIX, path="m.py", options=DecodeOptions(max_tokens=16)))
    hole = [s for s in states if isinstance(s, HoleState)][-1]
    assert hole.tokens[0] in allowed
    done = states[-1]
    assert isinstance(done, Completion)
    assert tok.decode(done.token_ids) == done.text and len(done.confidences) == len(done.token_ids)
    raw = tok.decode([t for t in hole.tokens if t != tok.pad_id and t not in tok.stop_ids])
    assert not raw.startswith(prompt.lead) or done.text == raw[len(prompt.lead):][: len(done.text)]


def test_refine_on_a_healed_model_keeps_text_and_ids_together(model):
    draft = infill(model, PREFIX, SUFFIX, path="m.py", options=DecodeOptions(max_tokens=12, min_tokens=4))
    again = refine(model, PREFIX, SUFFIX, draft, remask=2, path="m.py", options=DecodeOptions(max_tokens=12))
    assert model.tokenizer.decode(again.token_ids) == again.text


# --- the left-to-right baseline ------------------------------------------------------------------


@pytest.mark.parametrize("text, single, end", [
    ("x = 1\ny = 2\n", True, 6), ("x = 1", True, None),
    ("    a = 1\n    b = 2\nc = 3\n", False, 20), ("    a = 1\n\n    b = 2\n", False, None),
])
def test_block_ended(text, single, end):
    assert block_ended(text, single) == end


def test_ltr_infill_heals_and_stops(small):
    base = load_adapted(small.dir, device="cpu", dtype="float32", adapter=False)
    done = anchored_infill(base, PREFIX, "", options=DecodeOptions(max_tokens=10, best_of=1, max_lines=1), headed=False)
    assert done.stats.tokens <= 10 and done.text.count("\n") <= 1
    assert base.tokenizer.decode(done.token_ids) == done.text


def test_eval_ltr_needs_a_model_with_a_base(tmp_path):
    result = run_dcode("eval", "--ltr", "-n", "1", cwd=tmp_path)
    assert result.returncode == 2 and "has none" in result.stderr


# --- adaptation -----------------------------------------------------------------------------------

SOURCE = (
    "import os\n\n\n"
    "def size(path):\n    \"\"\"Bytes in path.\"\"\"\n    return os.path.getsize(path)\n\n\n"
    "def double(\n    x,\n):\n    y = x * 2\n    return y\n\n\n"
    "class Box:\n    def __init__(self, items):\n        self.items = list(items)\n\n"
    "    def count(self):\n        return len(self.items)\n"
)


@pytest.mark.parametrize("kind", ["line", "lines", "body", "span"])
def test_holes_cut_where_their_kind_says(kind):
    import random

    rng = random.Random(0)
    cuts = [cut for cut in (cut_hole(SOURCE, kind, rng) for _ in range(40)) if cut is not None]
    assert len(cuts) > 20
    for a, b in cuts:
        middle = SOURCE[a:b]
        assert 0 <= a < b <= len(SOURCE) and middle
        if kind != "span":
            assert SOURCE[a - 1] == "\n" and middle.endswith("\n")
        if kind == "body":
            assert all(not line.strip() or line.startswith("    ") for line in middle.splitlines())
            assert SOURCE[:a].rstrip().endswith(":")


def test_an_example_is_the_inference_prompt_then_the_hole(small):
    import random

    cfg = AdaptConfig(out_dir="-", base=str(small.dir), seq_len=96, max_hole=40)
    tok = small.tok
    made = [make_example(SourceFile("pkg", "pkg/m.py", SOURCE), tok, cfg, random.Random(i)) for i in range(40)]
    made = [ex for ex in made if ex is not None]
    assert made
    for ex in made:
        assert len(ex.tokens) <= 96 and tok.token_id("<fim_prefix>") in ex.tokens[: ex.hole_start]
        hole = ex.tokens[ex.hole_start:]
        assert hole and hole[0] != tok.pad_id
        pads = len(hole) - len([t for t in hole if t != tok.pad_id])
        assert hole[len(hole) - pads:] == [tok.pad_id] * pads  # pads only after the middle


def test_adapt_trains_and_exports_a_loadable_adapter(small, tmp_path):
    for name in ("alpha", "beta", "gamma"):
        pkg = tmp_path / "src" / name
        pkg.mkdir(parents=True)
        (pkg / "LICENSE").write_text("MIT License\n\nPermission is hereby granted, free of charge, to any person")
        (pkg / "mod.py").write_text(SOURCE.replace("size", f"size_{name}") * 3)
    out = tmp_path / "adapted"
    cfg = AdaptConfig(out_dir=str(out), base=str(small.dir), seq_len=96, batch_size=2, max_hole=40, max_steps=3,
                      eval_every=2, eval_batches=1, log_every=1, roots=[str(tmp_path / "src")], val_fraction=0.0,
                      heldout=str(tmp_path / "heldout.json"), context=128, rank=2)
    (tmp_path / "heldout.json").write_text(json.dumps({"packages": ["gamma"]}))
    state = adapt(cfg, log=lambda s: None)
    assert state.step == 3 and state.tokens_seen > 0
    record = json.loads((out / "training.json").read_text())
    assert record["heldout_packages"] == ["gamma"] and len(record["val_curve"]) == 3
    loaded = load_model(out, device="cpu", dtype="float32")
    assert loaded.config.max_seq_len == 128 and loaded.config.causal_context
    assert infill(loaded, PREFIX, SUFFIX, options=DecodeOptions(max_tokens=8)).stats.forward_passes >= 1
    # Continuing from the export starts where it ended: with no step, it exports the same adapter.
    again = dataclasses.replace(cfg, out_dir=str(tmp_path / "again"), init=str(out), max_steps=0)
    adapt(again, log=lambda s: None)
    assert json.loads((tmp_path / "again" / "training.json").read_text())["started_from"]["state"]["step"] == 3
    before, after = load_adapter(out)[1], load_adapter(tmp_path / "again")[1]
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(InputError, match="rank"):
        adapt(dataclasses.replace(again, rank=3), log=lambda s: None)


def test_adapt_refuses_an_unknown_recipe(small):
    with pytest.raises(InputError, match="unknown recipe"):
        adapt(AdaptConfig(out_dir="-", base=str(small.dir), recipe="c"))


# --- the GPU run's plumbing ------------------------------------------------------------------------


def test_the_base_travels_in_parts_and_is_checked_when_joined(small, tmp_path, monkeypatch):
    parts = split_base(small.dir, tmp_path / "parts", part_bytes=20_000)
    assert len(parts) > 2 and sum(p.stat().st_size for p in parts) == BaseManifest.load(small.dir).size
    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path / "device-cache"))
    joined = join_base(small.dir, tmp_path / "parts")
    assert joined.read_bytes() == b"".join(p.read_bytes() for p in parts)
    parts[1].write_bytes(b"x" + parts[1].read_bytes()[1:])
    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path / "other-cache"))
    with pytest.raises(ModelError, match="sha256"):
        join_base(small.dir, tmp_path / "parts")
    assert not list((tmp_path / "other-cache").rglob("*.gguf"))


def test_each_export_comes_back_as_few_files(small, tmp_path):
    sent = send_out(small.dir, tmp_path / "out")
    assert [p.name for p in sent] == ["adapter.safetensors", "tiny-small.tar"]
    with tarfile.open(sent[-1]) as tar:
        assert {"tiny-small/adapter.json", "tiny-small/config.json", "tiny-small/base.json"} <= set(tar.getnames())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["adapter.safetensors", "tiny-small.tar"]


def test_complete_latency_bench_types_one_character_per_request(model):
    row = complete_row(model, SOURCE * 8, requests=3, context_tokens=120)
    assert len(row.latencies_ms) == 3 and row.passes >= 3
    assert model.prefix_cache.reused > 0  # typing keeps the context: the prefix cache serves it
