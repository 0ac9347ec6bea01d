"""Adapt a pretrained autoregressive base into dcode-small: LoRA training on infilling holes.

Recipes (`--recipe`), compared at small scale before the long run (see dcode/train/README.md):
  a  causal context, diffusion hole: everything before the hole (the FIM-ordered suffix, the
     file header, the prefix) is read causally, as the base was pretrained, so its keys/values
     are exact and reusable; the hole attends to everything. Shifted logits reuse the base's head.
  b  Dream-style: all attention bidirectional, shifted logits.
  anchored  the drafter of an anchored model (dcode.diffusion.anchored, dcode.train.drafting):
     the frozen base reads the context, blocks of masked slots after a token learn the base's
     next-token distributions; only the blocks run through the adapter.

Each example is one file of the training packages with one hole cut out of it: a single line,
2-24 whole lines, a whole function body, or a span of characters that starts and ends mid-line.
The prompt is built by `dcode.diffusion.engine.fim_prompt`, the same function inference uses
(token healing included); the hole holds the middle's tokens and then 0..48 `<|pad|>` (where a
hole ends). Hole tokens are masked all at once (half the examples, the sampler's first pass) or
each with probability t ~ U(0.001, 1) with weight 1/t (its later passes). Only the LoRA matrices,
the norms and the added tokens' embeddings train; the base stays frozen.

`python -m dcode.train.adapt` and `dcode train adapt` run the same function; on a GPU it writes
the adapter every `--save-minutes` to `--out`, so a run cut short still leaves one.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dcode.diffusion.engine import fim_prompt
from dcode.errors import InputError
from dcode.model.adapted import ADDED_TOKENS, convert_base
from dcode.model.base import BaseManifest, locate_base
from dcode.model.device import cpu_has_fast_bf16
from dcode.model.loaded import build_model
from dcode.model.lora import ADDED_ROWS, AdapterConfig, adapter_tensors, attach, load_adapter, save_adapter
from dcode.model.tokenizer import Tokenizer
from dcode.model.transformer import Transformer
from dcode.sources.packages import SourceFile, cap_files, collect_files, discover_packages, is_validation
from dcode.train.drafting import DraftStream, draft_loss
from dcode.train.run import TrainState, _Progress, lr_at, peak_flops, train_flops_per_token

HOLE_KINDS = ("line", "lines", "body", "span")
HOLE_WEIGHTS = (0.35, 0.3, 0.15, 0.2)
DEF_LINE = re.compile(r"^([ \t]*)(async[ \t]+)?def[ \t]")


@dataclass
class AdaptConfig:
    out_dir: str
    base: str  # a model directory with base.json (dcode-small), whose base is pulled
    recipe: str = "a"
    rank: int = 32
    alpha: float = 32.0
    seq_len: int = 512
    context: int = 2048  # the adapted model's context length (at most the base's)
    batch_size: int = 8
    max_hole: int = 192  # tokens of middle; longer holes are drawn again
    max_pads: int = 48
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    schedule_steps: int | None = None
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    minutes: float | None = None
    max_steps: int | None = None
    eval_every: int = 100
    eval_batches: int = 4
    save_minutes: float = 5.0
    log_every: int = 10
    seed: int = 0
    device: str | None = None
    threads: int | None = None
    workers: int = 0  # data-loader processes (a GPU run needs a few to keep it fed)
    compile: bool = False
    val_fraction: float = 0.05
    max_package_bytes: int = 3 * 1024 * 1024
    roots: list[str] | None = None  # source roots (default: this Python's stdlib and site-packages)
    heldout: str | None = None  # heldout.json whose packages never train (default: the base dir's)
    init: str | None = None  # continue from this exported adapter (same rank)
    draft_tokens: int = 8  # recipe anchored: rows per drafting block
    cuts: int = 12  # recipe anchored: blocks per window


# ------------------------------------------------------------------------------------------ data


@dataclass
class Example:
    tokens: list[int]
    hole_start: int  # the hole (middle, then pads) runs from here to the end of `tokens`


def split_sources(cfg: AdaptConfig, log=print) -> tuple[list[SourceFile], list[SourceFile], list[str]]:
    """(training files, validation files, validation package names): permissively licensed
    packages only, whole packages held out by the corpus' own split, plus every package named in
    the held-out list, so that `dcode eval` never scores a file the adapter trained on."""
    forced: set[str] = set()
    heldout = Path(cfg.heldout) if cfg.heldout else Path(cfg.base) / "heldout.json"
    if heldout.is_file():
        forced = set(json.loads(heldout.read_text(encoding="utf-8"))["packages"])
    packages = [p for p in discover_packages([Path(r) for r in cfg.roots] if cfg.roots else None)
                if p.license is not None and p.files]
    kept = collect_files(packages)
    train: list[SourceFile] = []
    val: list[SourceFile] = []
    val_names: list[str] = []
    for pkg in sorted(packages, key=lambda p: p.name):
        files = cap_files(kept[pkg.name], cfg.max_package_bytes)
        if pkg.name in forced or is_validation(pkg.name, cfg.val_fraction):
            val += files
            val_names.append(pkg.name)
        else:
            train += files
    if not train or not val:
        raise InputError("no training or no validation source files (check --roots and licenses)")
    log(f"sources: {len(train):,} training files, {len(val):,} validation files ({len(val_names)} packages held out)")
    return train, val, val_names


def cut_hole(text: str, kind: str, rng: random.Random) -> tuple[int, int] | None:
    """Character range [a, b) of a hole of `kind` in `text`, or None when the file has none."""
    lines = text.splitlines(keepends=True)
    if len(lines) < 3:
        return None
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    if kind == "span":
        a = rng.randrange(starts[1], starts[-1])
        return a, min(starts[-1], a + rng.randint(1, 160))
    if kind == "body":
        defs = [i for i, line in enumerate(lines[:-1]) if DEF_LINE.match(line)]
        if not defs:
            return None
        i = rng.choice(defs)
        indent = len(DEF_LINE.match(lines[i]).group(1))
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():
            j -= 1
        first = i + 1
        # A def whose signature spans lines: the body starts after the line ending in ":".
        while first < j and not lines[first - 1].rstrip().endswith(":"):
            first += 1
        return (starts[first], starts[j]) if first < j else None
    size = 1 if kind == "line" else rng.randint(2, 24)
    first = rng.randrange(1, max(2, len(lines) - size))
    last = min(len(lines), first + size)
    if not "".join(lines[first:last]).strip():
        return None
    return starts[first], starts[last]


def make_example(f: SourceFile, tok: Tokenizer, cfg: AdaptConfig, rng: random.Random) -> Example | None:
    kind = rng.choices(HOLE_KINDS, HOLE_WEIGHTS)[0]
    cut = cut_hole(f.text, kind, rng)
    if cut is None:
        return None
    a, b = cut
    # Characters far from the hole never fit the window; cropping them first saves tokenizing.
    prefix, middle, suffix = f.text[max(0, a - 6 * cfg.seq_len) : a], f.text[a:b], f.text[b : b + 3 * cfg.seq_len]
    probe = fim_prompt(tok, prefix, suffix, f.path, (), cfg.seq_len, True)
    mid = tok.encode(probe.lead + middle + probe.trail)
    if not mid or len(mid) > cfg.max_hole:
        return None
    pads = [tok.pad_id] * rng.randint(0, min(cfg.max_pads, max(8, len(mid))))
    hole = mid + pads
    prompt = fim_prompt(tok, prefix, suffix, f.path, (), cfg.seq_len - len(hole), True)
    if len(prompt.before) < 8:
        return None
    return Example(prompt.before + hole, len(prompt.before))


@dataclass
class Batch:
    inputs: Tensor  # [B, T] with mask ids in the hole
    targets: Tensor  # [B, T] the clean tokens
    weights: Tensor  # [B, T] 1/t where a hole token is masked, else 0
    hole_start: Tensor  # [B]
    valid: Tensor  # [B, T] bool, False = right padding


def collate(examples: Sequence[Example], tok: Tokenizer, seq_len: int, rng: torch.Generator) -> Batch:
    B = len(examples)
    targets = torch.full((B, seq_len), tok.pad_id, dtype=torch.long)
    valid = torch.zeros(B, seq_len, dtype=torch.bool)
    in_hole = torch.zeros(B, seq_len, dtype=torch.bool)
    for i, ex in enumerate(examples):
        n = len(ex.tokens)
        targets[i, :n] = torch.tensor(ex.tokens)
        valid[i, :n] = True
        in_hole[i, ex.hole_start : n] = True
    t = 1e-3 + (1 - 1e-3) * torch.rand(B, generator=rng)
    t = torch.where(torch.rand(B, generator=rng) < 0.5, torch.ones(B), t)  # half: the first pass
    masked = in_hole & (torch.rand(B, seq_len, generator=rng) < t[:, None])
    for i, ex in enumerate(examples):
        if not masked[i].any():
            masked[i, ex.hole_start] = True
    inputs = torch.where(masked, torch.full_like(targets, tok.mask_id), targets)
    hole_start = torch.tensor([ex.hole_start for ex in examples])
    return Batch(inputs, targets, masked.float() / t[:, None], hole_start, valid)


class HoleStream(torch.utils.data.IterableDataset):
    """Endless batches of hole examples; each worker draws with its own seed."""

    def __init__(self, files: list[SourceFile], tok: Tokenizer, cfg: AdaptConfig, seed: int) -> None:
        self.files, self.tok, self.cfg, self.seed = files, tok, cfg, seed
        self.weights = [len(f.text) ** 0.5 for f in files]  # big files count, but do not dominate

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        seed = self.seed * 1000 + (info.id if info else 0)
        rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
        while True:
            yield self.batch(rng, gen)

    def batch(self, rng: random.Random, gen: torch.Generator) -> Batch:
        examples: list[Example] = []
        while len(examples) < self.cfg.batch_size:
            f = rng.choices(self.files, self.weights)[0]
            ex = make_example(f, self.tok, self.cfg, rng)
            if ex is not None:
                examples.append(ex)
        return collate(examples, self.tok, self.cfg.seq_len, gen)


# ------------------------------------------------------------------------------------------- loss


def hole_loss(net: Transformer, batch: Batch, recipe: str) -> tuple[Tensor, Tensor]:
    """(weighted loss per hole token, plain CE of the masked tokens). Shifted logits: the row
    before a masked position scores its token."""
    rows = torch.zeros_like(batch.valid)
    rows[:, :-1] = batch.weights[:, 1:] > 0
    causal_until = batch.hole_start if recipe == "a" else None
    logits = net(batch.inputs, key_mask=batch.valid, causal_until=causal_until, rows=rows)
    w = batch.weights[:, 1:][rows[:, :-1]]
    ce = F.cross_entropy(logits.float(), batch.targets[:, 1:][rows[:, :-1]], reduction="none")
    holes = (batch.valid & (torch.arange(batch.valid.shape[1], device=batch.valid.device) >= batch.hole_start[:, None])).sum()
    return (ce * w).sum() / holes, ce.mean().detach()


def _to(batch, device: torch.device):
    """A batch (a dataclass of tensors) on `device`."""
    return type(batch)(*(t.to(device, non_blocking=True) for t in dataclasses.astuple(batch)))


@dataclass
class Objective:
    """What a recipe trains on: its batch stream (files, seed), its loss (the loss and a second
    figure, named `metric`, to log beside it)."""

    stream: Callable[[list[SourceFile], int], torch.utils.data.IterableDataset]
    loss: Callable[[Transformer, object], tuple[Tensor, Tensor]]
    metric: str


def objective_for(cfg: AdaptConfig, tok: Tokenizer, base: Transformer | None) -> Objective:
    """Hole recipes (a, b) train on masked holes; `anchored` trains a drafter against `base`."""
    if cfg.recipe == "anchored":
        assert base is not None
        return Objective(
            lambda files, seed: DraftStream(files, tok, cfg.seq_len, cfg.batch_size, cfg.cuts, cfg.draft_tokens, seed),
            lambda net, batch: draft_loss(base, net, batch, cfg.draft_tokens, tok.mask_id), "accepted")
    return Objective(lambda files, seed: HoleStream(files, tok, cfg, seed),
                     lambda net, batch: hole_loss(net, batch, cfg.recipe), "masked_ce")


@torch.no_grad()
def validation_loss(net: Transformer, batches: list, objective: Objective, device, autocast) -> tuple[float, float]:
    """Mean (loss, the objective's metric) over fixed held-out batches (same for every run)."""
    net.eval()
    totals = [0.0, 0.0]
    for batch in batches:
        with autocast():
            loss, plain = objective.loss(net, _to(batch, device))
        totals[0] += loss.item()
        totals[1] += plain.item()
    net.train()
    return totals[0] / len(batches), totals[1] / len(batches)


# ------------------------------------------------------------------------------------------- loop


def export_adapter(out: Path, net: Transformer, acfg: AdapterConfig, mcfg, base_dir: Path, meta: dict) -> None:
    """A complete dcode-small model directory: config, adapter, base manifest, held-out list and
    the training record (the card is written from it by `dcode train card`)."""
    out.mkdir(parents=True, exist_ok=True)
    save_adapter(out, adapter_tensors(net, acfg), acfg)
    mcfg.save(out / "config.json")
    for name in ("base.json", "heldout.json"):
        if (base_dir / name).is_file() and (base_dir / name).resolve() != (out / name).resolve():
            shutil.copyfile(base_dir / name, out / name)
    (out / "training.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def continue_from(net: Transformer, acfg: AdapterConfig, model_dir: Path) -> dict:
    """Load an exported adapter into the attached LoRA parameters (same rank and base); returns
    that run's training record, which the new one carries as `started_from`."""
    saved_cfg, tensors = load_adapter(model_dir)
    if (saved_cfg.rank, saved_cfg.base_vocab) != (acfg.rank, acfg.base_vocab):
        raise InputError(f"{model_dir}: its adapter has rank {saved_cfg.rank}; pass --rank {saved_cfg.rank}")
    params = dict(net.named_parameters())
    with torch.no_grad():
        for name, t in tensors.items():
            if name == ADDED_ROWS:
                net.embed.weight[acfg.base_vocab :] = t
            elif name in params:
                params[name].copy_(t)
            else:
                raise InputError(f"{model_dir}: adapter tensor {name} does not fit this model")
    return json.loads((model_dir / "training.json").read_text(encoding="utf-8"))


def adapt(cfg: AdaptConfig, log=print, on_export: Callable[[Path], None] | None = None) -> TrainState:
    """Train the adapter; export it to `cfg.out_dir` every `save_minutes` and at the end, then
    call `on_export(out_dir)` (the GPU run copies each export out of the machine)."""
    if cfg.recipe not in ("a", "b", "anchored"):
        raise InputError(f"unknown recipe {cfg.recipe!r} (a: causal context, b: bidirectional, anchored: a drafter)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base_dir, out = Path(cfg.base), Path(cfg.out_dir)
    gguf_path = locate_base(BaseManifest.load(base_dir), base_dir.name)
    anchored = cfg.recipe == "anchored"
    mcfg, state, tok = convert_base(gguf_path, causal_context=cfg.recipe != "b")
    mcfg = dataclasses.replace(mcfg, max_seq_len=min(cfg.context, mcfg.max_seq_len),
                               decoder="anchored" if anchored else "diffusion")
    net = build_model(mcfg, tok, state, device="cpu", dtype="float32").net
    base = build_model(mcfg, tok, state, device=device, dtype="float32").net.requires_grad_(False) if anchored else None
    objective = objective_for(cfg, tok, base)
    acfg = AdapterConfig(base_vocab=mcfg.vocab_size - len(ADDED_TOKENS), rank=cfg.rank, alpha=cfg.alpha)
    params = attach(net, acfg)
    started_from = None
    if cfg.init:
        started_from = continue_from(net, acfg, Path(cfg.init))
        log(f"continuing from the adapter in {cfg.init} ({started_from['state']['tokens_seen']:,} tokens)")
    net.to(device).train()
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")
    train_files, val_files, val_names = split_sources(cfg, log)
    val_batches = list(itertools.islice(iter(objective.stream(val_files, 10_000 + cfg.seed)), cfg.eval_batches))
    loader = torch.utils.data.DataLoader(objective.stream(train_files, cfg.seed), batch_size=None,
                                         num_workers=cfg.workers, pin_memory=device.type == "cuda")
    model = torch.compile(net) if cfg.compile else net

    # bf16 autocast on CUDA, and on CPUs that multiply bf16 natively (about 2x float32 there).
    use_bf16 = device.type == "cuda" or cpu_has_fast_bf16()

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    st = TrainState()
    flops_tok, peak = train_flops_per_token(mcfg, cfg.seq_len), peak_flops(device)
    if anchored:  # the base only reads (a third of a training step), the drafted rows train
        flops_tok *= 1 / 3 + cfg.cuts * cfg.draft_tokens / cfg.seq_len
    curve: list[dict] = []
    out.mkdir(parents=True, exist_ok=True)
    metrics = (out / "metrics.jsonl").open("a", encoding="utf-8")
    # The embedding is in `params` whole, but only the added tokens' rows of it train.
    trainable = sum(p.numel() for p in params if p is not net.embed.weight) + len(ADDED_TOKENS) * mcfg.dim

    def meta() -> dict:
        tok_s = st.tokens_seen / st.elapsed_s if st.elapsed_s else 0.0
        return {"recipe": cfg.recipe, "config": dataclasses.asdict(cfg), "state": dataclasses.asdict(st),
                "tok_s": round(tok_s), "mfu_6n": round(tok_s * flops_tok / peak, 4) if peak else None,
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "val_curve": curve, "heldout_packages": val_names, "started_from": started_from, "trainable_parameters": trainable}

    def evaluate() -> None:
        val, plain = validation_loss(net, val_batches, objective, device, autocast)
        st.best_val = val if st.best_val is None else min(st.best_val, val)
        curve.append({"step": st.step, "tokens": st.tokens_seen, "val_loss": round(val, 4), f"val_{objective.metric}": round(plain, 4)})
        log(f"step {st.step}: val loss {val:.4f}, {objective.metric} {plain:.4f} ({st.tokens_seen:,} tokens)")
        metrics.write(json.dumps(curve[-1]) + "\n")
        metrics.flush()

    evaluate()
    progress = _Progress(cfg, st)
    last_save = time.perf_counter()
    window_t, window_tokens = time.perf_counter(), 0
    batches = iter(loader)
    try:
        while not (cfg.max_steps is not None and st.step >= cfg.max_steps) and not (cfg.minutes and st.elapsed_s >= cfg.minutes * 60):
            t0 = time.perf_counter()
            lr = lr_at(cfg, st.step, st.elapsed_s)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = _to(next(batches), device)
            with autocast():
                loss, plain = objective.loss(model, batch)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip).item()
            opt.step()
            opt.zero_grad(set_to_none=True)
            st.step += 1
            st.tokens_seen += int(batch.valid.sum())
            window_tokens += int(batch.valid.sum())
            st.elapsed_s += time.perf_counter() - t0
            progress.update(st)
            if st.step % cfg.log_every == 0:
                tps = window_tokens / (time.perf_counter() - window_t)
                record = {"step": st.step, "loss": round(loss.item(), 4), objective.metric: round(plain.item(), 4), "lr": lr,
                          "grad_norm": round(gnorm, 3), "tokens": st.tokens_seen, "tok_s": round(tps)}
                if peak:
                    record["mfu"] = round(tps * flops_tok / peak, 4)
                log(" | ".join(f"{k} {v}" for k, v in record.items()))
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                window_t, window_tokens = time.perf_counter(), 0
            if st.step % cfg.eval_every == 0:
                evaluate()
            if time.perf_counter() - last_save > cfg.save_minutes * 60:
                export_adapter(out, net, acfg, mcfg, base_dir, meta())
                if on_export is not None:
                    on_export(out)
                last_save = time.perf_counter()
    finally:
        progress.close()
    if curve[-1]["step"] != st.step:
        evaluate()
    metrics.close()
    export_adapter(out, net, acfg, mcfg, base_dir, meta())
    if on_export is not None:
        on_export(out)
    log(f"exported {out} at step {st.step}, {st.tokens_seen:,} tokens, {st.elapsed_s / 60:.1f} min")
    return st


def parse_args(argv: list[str] | None = None) -> AdaptConfig:
    p = argparse.ArgumentParser(prog="python -m dcode.train.adapt", description=__doc__.splitlines()[0])
    for f in dataclasses.fields(AdaptConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("out_dir", "base"):
            p.add_argument(flag if f.name == "base" else "--out", dest=f.name, required=True)
        elif f.name == "roots":
            p.add_argument(flag, nargs="+", default=None)
        elif f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type.split(" ")[0]]
            p.add_argument(flag, type=kind, default=f.default)
    return AdaptConfig(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    adapt(parse_args(argv), log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
