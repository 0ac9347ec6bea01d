"""The training loop: masked diffusion on the packed corpus, on CPU or CUDA with the same code.

AdamW (no decay on norms), linear warmup then cosine decay, gradient clipping, bf16 autocast and
`torch.compile` on CUDA, a time budget after which it saves and stops, checkpoint + resume, a
validation loss on held-out packages, and a progress bar with ETA. `python -m dcode.train.run`
runs it directly; `dcode train run` is the same function behind the CLI.

The learning-rate schedule follows *progress*, the larger of step/max_steps and
elapsed/time budget, so a run limited by `--minutes` still decays fully to its minimum by the end.
Elapsed time is saved in the checkpoint, so a resumed run continues on the same schedule.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dcode.errors import InputError
from dcode.model.config import ModelConfig
from dcode.model.loader import LoadedModel, load_model
from dcode.model.tokenizer import Tokenizer
from dcode.model.transformer import Transformer
from dcode.train.data import WindowSampler
from dcode.train.objective import Corrupted, MixConfig, TokenInfo, corrupt, diffusion_loss, masked_logits

CKPT_NAME = "ckpt.pt"
TRAINING_NAME = "training.json"  # what an exported model records of its training (see export.py)


@dataclass
class TrainConfig:
    data_dir: str
    out_dir: str
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn_dim: int | None = None  # default: SwiGLU ~2.7x dim, rounded to 64
    seq_len: int = 256
    batch_size: int = 16
    accum: int = 1
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    minutes: float | None = None
    max_steps: int | None = None
    schedule_steps: int | None = None  # length of the cosine in steps (default: max_steps)
    eval_every: int = 250
    eval_batches: int = 8
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str | None = None
    threads: int | None = None
    compile: bool | None = None  # default: on for CUDA
    init: str | None = None  # start from this exported dcode model (fine-tuning); its shape wins
    mix: MixConfig = dataclasses.field(default_factory=MixConfig)

    def model_config(self, vocab_size: int, tok: Tokenizer) -> ModelConfig:
        ffn = self.ffn_dim or int(round(self.dim * 8 / 3 / 64) * 64)
        return ModelConfig(
            vocab_size=vocab_size, dim=self.dim, n_layers=self.n_layers, n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads, ffn_dim=ffn, max_seq_len=self.seq_len,
            mask_id=tok.mask_id, pad_id=tok.pad_id, eos_id=tok.eos_id,
        )


@dataclass
class TrainState:
    step: int = 0
    tokens_seen: int = 0
    elapsed_s: float = 0.0
    best_val: float | None = None
    # With --init: the starting model's name and recorded training, read when the run starts
    # (the model directory may be overwritten by this run's export later).
    started_from: dict | None = None


# ---------------------------------------------------------------------------------- schedule/opt


def lr_at(cfg: TrainConfig, step: int, elapsed_s: float) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    progress = 0.0
    horizon = cfg.schedule_steps or cfg.max_steps
    if horizon:
        progress = max(progress, step / horizon)
    if cfg.minutes:
        progress = max(progress, elapsed_s / (cfg.minutes * 60))
    progress = min(progress, 1.0)
    cosine = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * warm * cosine


def make_optimizer(net: Transformer, cfg: TrainConfig, fused: bool) -> torch.optim.AdamW:
    # Weight decay on matrices only; norms (and biases) are not decayed.
    decay = [p for n, p in net.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in net.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)


# ---------------------------------------------------------------------------------------- metrics


# Dense (no sparsity) bf16 tensor-core peaks, FLOPS, from NVIDIA's datasheets (GeForce: with FP32
# accumulation, as torch's bf16 matmuls accumulate). A device name takes the first entry whose
# words are all among its words, so the variants come before the plain name ("H100 PCIe" before
# "H100") and "L4" does not claim an L40S. Left out on purpose: GPUs without bf16 tensor cores
# (V100, T4: their 125 and 65 TFLOPS are fp16 figures; bf16 autocast does not use those units
# there), which get no MFU rather than one against another precision's peak.
PEAK_BF16_DENSE_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12),
    ("H200 NVL", 835e12), ("H200", 989e12),
    ("A100", 312e12), ("A10", 125e12),
    ("L40S", 362e12), ("L40", 181e12), ("L4", 121e12),
    ("4090", 165e12), ("3090", 71e12),
)


@dataclass(frozen=True)
class Peak:
    """What an MFU figure is measured against, and the words that say so in a table."""

    flops: float | None  # None: no MFU is reported
    label: str

    @property
    def note(self) -> str:
        return f"MFU against {self.label}" if self.flops else f"no MFU: {self.label}"


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """6 N (matmul weights incl. the output head) + attention scores/values (PaLM appendix B)."""
    n = cfg.num_parameters() - cfg.vocab_size * cfg.dim * (1 if cfg.tie_embeddings else 2)
    n += cfg.vocab_size * cfg.dim  # the head matmul runs even when tied
    return 6 * n + 12 * cfg.n_layers * cfg.dim * seq_len


def bf16_peak(device_name: str) -> Peak:
    """The dense bf16 peak of a CUDA device, by the name torch gives it."""
    words = set(device_name.upper().replace("-", " ").split())
    for key, flops in PEAK_BF16_DENSE_FLOPS:
        if set(key.upper().split()) <= words:
            return Peak(flops, f"{device_name}'s dense bf16 peak, {flops / 1e12:g} TFLOPS ({key} datasheet)")
    return Peak(None, f"no dense bf16 peak known for {device_name}")


def device_peak(device: torch.device) -> Peak:
    if device.type != "cuda":
        return Peak(None, f"peaks are known for CUDA GPUs only, not {device.type}")
    return bf16_peak(torch.cuda.get_device_name(device))


def peak_flops(device: torch.device) -> float | None:
    return device_peak(device).flops


# ------------------------------------------------------------------------------------ checkpoints


def starting_model(model_dir: Path, tok: Tokenizer, seq_len: int) -> LoadedModel:
    """An exported dcode model to fine-tune: it must speak the corpus' tokenizer and hold the
    training windows."""
    model = load_model(model_dir, device="cpu", dtype="float32")
    if model.family != "dcode":
        raise InputError(f"{model_dir}: only dcode's own models can be trained further (this is {model.family})")
    if model.tokenizer.hf.get_vocab() != tok.hf.get_vocab():
        raise InputError(f"{model_dir}: its tokenizer is not the corpus' one; build the corpus with "
                         f"`dcode train corpus --tokenizer {model_dir / 'tokenizer.json'}`")
    if seq_len > model.config.max_seq_len:
        raise InputError(f"--seq-len {seq_len} is longer than {model_dir}'s context of {model.config.max_seq_len}")
    return model


def prior_training(model_dir: Path) -> dict:
    """The starting model's name and, when it recorded them, its training totals and val curve."""
    try:
        before = json.loads((model_dir / TRAINING_NAME).read_text(encoding="utf-8"))
        total = before.get("total", before["state"])
    except (OSError, ValueError, KeyError):
        return {"model": model_dir.resolve().name}
    keys = ("step", "tokens_seen", "elapsed_s")
    return {"model": model_dir.resolve().name, "total": {k: total[k] for k in keys},
            "val_loss_curve": before.get("val_loss_curve", [])}


def save_training_checkpoint(out_dir: Path, net: Transformer, opt, cfg: TrainConfig, mcfg: ModelConfig, state: TrainState) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "optimizer": opt.state_dict(),
        "train_config": json.loads(json.dumps(dataclasses.asdict(cfg))),
        "model_config": dataclasses.asdict(mcfg),
        "state": dataclasses.asdict(state),
    }
    tmp = out_dir / (CKPT_NAME + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out_dir / CKPT_NAME)  # atomic: a run killed mid-save keeps the previous one
    return out_dir / CKPT_NAME


def load_training_checkpoint(path: Path) -> dict:
    if path.is_dir():
        path = path / CKPT_NAME
    if not path.is_file():
        raise InputError(f"{path}: no training checkpoint to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------------------- loop


@torch.no_grad()
def validation_loss(forward, net: Transformer, sampler: WindowSampler, info: TokenInfo, cfg: TrainConfig, device, autocast) -> float:
    """Mean ELBO loss over fixed held-out batches with fixed corruption (comparable across runs)."""
    was_training = net.training
    net.eval()
    total = 0.0
    for i in range(cfg.eval_batches):
        clean = sampler.batch(cfg.batch_size, seed=10_000 + cfg.seed, step=i)
        batch = corrupt(clean, info, cfg.mix, torch.Generator().manual_seed(i))
        batch = _to(batch, device)
        with autocast():
            logits = forward(batch)
        total += diffusion_loss(logits, batch)[0].item()
    net.train(was_training)
    return total / cfg.eval_batches


def _to(batch: Corrupted, device: torch.device) -> Corrupted:
    return Corrupted(batch.inputs.to(device), batch.targets.to(device), batch.weights.to(device), batch.kind)


def train(cfg: TrainConfig, resume: bool = False, log=print) -> TrainState:
    data_dir, out_dir = Path(cfg.data_dir), Path(cfg.out_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tok = Tokenizer.load(data_dir / "tokenizer.json")
    info = TokenInfo.from_tokenizer(tok)
    state = TrainState()
    start: LoadedModel | None = None
    ckpt = load_training_checkpoint(out_dir) if resume else None
    if ckpt is not None:
        # The saved schedule/model shape wins; only the budget and step limits may be changed.
        saved = ckpt["train_config"]
        keep = {"minutes", "max_steps", "device", "threads", "eval_every", "save_every", "log_every", "out_dir", "data_dir"}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in saved.items() if k not in keep and k != "mix"}, mix=MixConfig(**saved["mix"]))
        mcfg = ModelConfig.from_dict(ckpt["model_config"])
        state = TrainState(**ckpt["state"])
    elif cfg.init:
        start = starting_model(Path(cfg.init), tok, cfg.seq_len)
        state.started_from = prior_training(Path(cfg.init))
        mcfg = start.config
        log(f"starting from {cfg.init} (its shape: dim {mcfg.dim}, {mcfg.n_layers} layers)")
    else:
        mcfg = cfg.model_config(tok.vocab_size, tok)
    torch.manual_seed(cfg.seed)
    net = Transformer(mcfg)
    net.init_weights(cfg.seed)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
    elif start is not None:
        net.load_state_dict(start.net.state_dict())
    net.to(device).train()
    opt = make_optimizer(net, cfg, fused=device.type == "cuda")
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_dir / "tokenizer.json", out_dir / "tokenizer.json")
    (out_dir / "config.json").write_text(mcfg.to_json(), encoding="utf-8")

    use_compile = cfg.compile if cfg.compile is not None else device.type == "cuda"
    model = torch.compile(net) if use_compile else net
    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def forward(batch: Corrupted) -> Tensor:
        # A compiled graph wants static shapes: full logits. Eager (CPU) runs the output head on
        # the masked positions only, which is most of the saving there.
        if use_compile:
            return model(batch.inputs)
        return masked_logits(net, batch.inputs, batch.weights > 0)

    train_sampler = WindowSampler(data_dir, "train", cfg.seq_len)
    val_sampler = WindowSampler(data_dir, "val", cfg.seq_len) if _has_split(data_dir, "val", cfg.seq_len) else None
    flops_tok = train_flops_per_token(mcfg, cfg.seq_len)
    peak = device_peak(device)
    log(
        f"model: {mcfg.num_parameters() / 1e6:.2f}M params (dim {mcfg.dim}, {mcfg.n_layers} layers, ffn {mcfg.ffn_dim}), "
        f"device {device}, train tokens {train_sampler.tokens:,}, start step {state.step}; {peak.note}"
    )
    metrics = (out_dir / "metrics.jsonl").open("a", encoding="utf-8")
    gen = torch.Generator()
    budget_s = cfg.minutes * 60 if cfg.minutes else None
    progress = _Progress(cfg, state)
    tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.accum
    window_t, window_tokens = time.perf_counter(), 0
    try:
        while True:
            if cfg.max_steps is not None and state.step >= cfg.max_steps:
                break
            if budget_s is not None and state.elapsed_s >= budget_s:
                break
            t0 = time.perf_counter()
            lr = lr_at(cfg, state.step, state.elapsed_s)
            for group in opt.param_groups:
                group["lr"] = lr
            loss_sum, plain_sum = 0.0, 0.0
            for micro in range(cfg.accum):
                gen.manual_seed(cfg.seed * 1_000_003 + state.step * 97 + micro)
                clean = train_sampler.batch(cfg.batch_size, cfg.seed, state.step * cfg.accum + micro)
                batch = _to(corrupt(clean, info, cfg.mix, gen), device)
                with autocast():
                    logits = forward(batch)
                loss, plain = diffusion_loss(logits, batch)
                (loss / cfg.accum).backward()
                loss_sum += loss.item() / cfg.accum
                plain_sum += plain.item() / cfg.accum
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip).item()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            state.step += 1
            state.tokens_seen += tokens_per_step
            state.elapsed_s += time.perf_counter() - t0
            window_tokens += tokens_per_step
            progress.update(state)
            if state.step % cfg.log_every == 0:
                dt = time.perf_counter() - window_t
                tps = window_tokens / dt
                record = {"step": state.step, "loss": round(loss_sum, 4), "masked_ce": round(plain_sum, 4), "lr": lr,
                          "grad_norm": round(grad_norm, 3), "tokens": state.tokens_seen, "tok_s": round(tps),
                          "elapsed_s": round(state.elapsed_s, 1)}
                if peak.flops:
                    record["mfu"] = round(tps * flops_tok / peak.flops, 4)
                log(_fmt(record))
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                window_t, window_tokens = time.perf_counter(), 0
            if val_sampler is not None and state.step % cfg.eval_every == 0:
                val = validation_loss(forward, net, val_sampler, info, cfg, device, autocast)
                state.best_val = val if state.best_val is None else min(state.best_val, val)
                log(f"step {state.step}: val loss {val:.4f} (best {state.best_val:.4f})")
                metrics.write(json.dumps({"step": state.step, "val_loss": round(val, 4), "tokens": state.tokens_seen}) + "\n")
                metrics.flush()
                window_t, window_tokens = time.perf_counter(), 0
            if state.step % cfg.save_every == 0:
                save_training_checkpoint(out_dir, net, opt, cfg, mcfg, state)
    finally:
        progress.close()
        metrics.close()
    if val_sampler is not None:
        val = validation_loss(forward, net, val_sampler, info, cfg, device, autocast)
        state.best_val = val if state.best_val is None else min(state.best_val, val)
        log(f"final val loss {val:.4f}")
        with (out_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.step, "val_loss": round(val, 4), "tokens": state.tokens_seen, "final": True}) + "\n")
    path = save_training_checkpoint(out_dir, net, opt, cfg, mcfg, state)
    log(f"saved {path} at step {state.step}, {state.tokens_seen:,} tokens, {state.elapsed_s / 60:.1f} min")
    return state


def _has_split(data_dir: Path, split: str, seq_len: int) -> bool:
    index = json.loads((data_dir / "index.json").read_text(encoding="utf-8"))
    return any(s["tokens"] > seq_len + 1 for s in index["splits"].get(split, []))


def _fmt(record: dict) -> str:
    parts = [f"step {record['step']}", f"loss {record['loss']:.4f}", f"masked_ce {record['masked_ce']:.3f}",
             f"lr {record['lr']:.2e}", f"gnorm {record['grad_norm']:.2f}", f"{record['tok_s']:,} tok/s",
             f"{record['tokens']:,} tokens"]
    if "mfu" in record:
        parts.append(f"MFU {record['mfu'] * 100:.1f}%")
    return " | ".join(parts)


class _Progress:
    """A rich progress bar with ETA over the time budget (or the step limit); silent off a tty,
    where the periodic log lines carry the same information."""

    def __init__(self, cfg: TrainConfig, state: TrainState) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.by_time = cfg.minutes is not None
        total = cfg.minutes * 60 if self.by_time else (cfg.max_steps or 0)
        console = Console(stderr=True)
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeRemainingColumn(), console=console, disable=not console.is_terminal)
        self.task = self.bar.add_task("train", total=total or None, info="")
        self.bar.start()
        self.update(state)

    def update(self, state: TrainState) -> None:
        done = state.elapsed_s if self.by_time else state.step
        self.bar.update(self.task, completed=done, info=f"step {state.step} {state.tokens_seen / 1e6:.1f}M tok")

    def close(self) -> None:
        self.bar.stop()


# --------------------------------------------------------------------------------------- CLI glue


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(prog="python -m dcode.train.run", description=__doc__.splitlines()[0])
    defaults = TrainConfig(data_dir="", out_dir="")
    p.add_argument("--data", default="data/corpus")
    p.add_argument("--out", default="runs/train")
    p.add_argument("--resume", action="store_true")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("data_dir", "out_dir", "mix", "compile"):
            continue
        default = getattr(defaults, f.name)
        kind = {"int": int, "float": float, "str": str}[f.type.split(" ")[0].replace("|", "").strip()] if isinstance(f.type, str) else f.type
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=default)
    p.add_argument("--compile", dest="compile", action="store_true", default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    a = p.parse_args(argv)
    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in ("data_dir", "out_dir", "mix")}
    return TrainConfig(data_dir=a.data, out_dir=a.out, **values), a.resume


def main(argv: list[str] | None = None) -> int:
    cfg, resume = parse_args(argv)
    train(cfg, resume=resume, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
