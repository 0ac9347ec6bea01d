"""Export a training run as a shippable model directory and write its model card.

`export_model` turns `runs/<name>/ckpt.pt` into `weights/<name>/`: config.json, tokenizer.json,
int8 sharded safetensors, `heldout.json` (the validation packages, so `dcode eval` can rebuild the
held-out set anywhere) and `training.json` (what the card reports). `write_model_card` renders
README.md from those plus an evaluation report (`dcode eval --json`).
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from dcode.eval.tasks import HELDOUT_NAME
from dcode.model.checkpoint import save_checkpoint, weights_size
from dcode.model.config import ModelConfig
from dcode.train.run import TRAINING_NAME, load_training_checkpoint


def hardware_description(threads: int | None = None) -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({name}, {threads or torch.get_num_threads()} threads)"


def export_model(run_dir: Path, data_dir: Path, out_dir: Path, int8: bool = True) -> dict:
    """Write the exported model; returns the training metadata it recorded."""
    ckpt = load_training_checkpoint(run_dir)
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    state = {k: v.float() for k, v in ckpt["model"].items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out_dir, state, cfg, int8=int8)
    shutil.copyfile(data_dir / "tokenizer.json", out_dir / "tokenizer.json")
    manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    used = [m for m in manifest if m.get("used")]
    heldout = sorted({m["name"] for m in used if m.get("split") == "val"})
    files = {m["name"]: m["files"] for m in used if m.get("split") == "val"}
    (out_dir / HELDOUT_NAME).write_text(json.dumps({"packages": heldout, "files": files}, indent=1) + "\n", encoding="utf-8")
    licenses: dict[str, list[str]] = {}
    for m in used:
        if m.get("split") == "train":
            licenses.setdefault(m["license"], []).append(m["name"])
    index = json.loads((data_dir / "index.json").read_text(encoding="utf-8"))
    meta = {
        "parameters": cfg.num_parameters(),
        "train_config": ckpt["train_config"],
        "state": ckpt["state"],
        "storage": "int8 row-wise (norms bf16)" if int8 else "bf16",
        "weights_bytes": weights_size(out_dir),
        "corpus": {
            "train_tokens": sum(s["tokens"] for s in index["splits"]["train"]),
            "val_tokens": sum(s["tokens"] for s in index["splits"].get("val", [])),
            "train_packages_by_license": {k: sorted(v) for k, v in sorted(licenses.items())},
            "skipped": [{"name": m["name"], "reason": m["reason"]} for m in manifest if not m.get("used")],
            "heldout_packages": heldout,
        },
        "hardware": hardware_description(ckpt["train_config"].get("threads")),
    }
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        vals = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if '"val_loss"' in line]
        meta["val_loss_curve"] = [(v["step"], v["val_loss"]) for v in vals]
    state = dict(ckpt["state"])
    started = state.pop("started_from", None)
    meta["state"] = state
    meta["total"] = state
    if started is not None:
        meta["started_from"] = started
        if "total" in started:  # the starting model's training plus this run's
            meta["total"] = {**state, **{k: started["total"][k] + state[k] for k in ("step", "tokens_seen", "elapsed_s")}}
    (out_dir / TRAINING_NAME).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta


def _training_line(meta: dict) -> str:
    st, total, hw = meta["state"], meta.get("total", meta["state"]), meta["hardware"]
    line = f"- **{total['step']:,} steps, {total['tokens_seen']:,} tokens seen** in {total['elapsed_s'] / 60:.1f} minutes of training"
    started = meta.get("started_from")
    if started is None:
        return f"{line} on {hw}."
    if "total" not in started:
        return f"- Fine-tuned from {started['model']} (whose training is not recorded): {line[2:]} on {hw}."
    prior = started["total"]
    return (f"{line} in all: {prior['step']:,} steps / {prior['tokens_seen']:,} tokens / "
            f"{prior['elapsed_s'] / 60:.1f} minutes as {started['model']}, then this run on {hw} "
            f"({st['step']:,} steps, {st['tokens_seen']:,} tokens, {st['elapsed_s'] / 60:.1f} minutes).")


@dataclass
class CardInputs:
    model_dir: Path
    eval_json: Path | None
    eval_command: str
    train_command: str
    corpus_command: str
    export_command: str
    notes: str = ""  # free text for the card's Training section (e.g. how the run went)


def write_model_card(inputs: CardInputs) -> Path:
    from dcode.eval.harness import Summary, markdown_table

    meta = json.loads((inputs.model_dir / TRAINING_NAME).read_text(encoding="utf-8"))
    cfg = ModelConfig.load(inputs.model_dir / "config.json")
    tc, corpus = meta["train_config"], meta["corpus"]
    table = "(not evaluated)\n"
    if inputs.eval_json is not None and inputs.eval_json.is_file():
        report = json.loads(inputs.eval_json.read_text(encoding="utf-8"))
        table = markdown_table([Summary(**s) for s in report["summary"]])
    lic_lines = "\n".join(
        f"- **{lic}** ({len(names)}): {', '.join(names[:40])}{' ...' if len(names) > 40 else ''}"
        for lic, names in corpus["train_packages_by_license"].items()
    )
    skipped = ", ".join(f"{s['name']} ({s['reason']})" for s in corpus["skipped"]) or "none"
    curve = ", ".join(f"{step}: {loss:.3f}" for step, loss in meta.get("val_loss_curve", []))
    text = f"""# {inputs.model_dir.name}

A small masked-diffusion code model for dcode's offline infilling, trained from scratch on CPU.
It is a demonstration-size model whose quality is bounded by its size and a short CPU run;
the evaluation below says what it can and cannot do.

## Architecture
- Bidirectional transformer (dcode's `Transformer`): {cfg.n_layers} layers, dim {cfg.dim}, {cfg.n_heads} heads
  ({cfg.n_kv_heads} key/value heads, GQA), SwiGLU MLP {cfg.ffn_dim}, RMSNorm, RoPE (theta {cfg.rope_theta:g}), tied embeddings.
- Context length {cfg.max_seq_len} tokens; vocabulary {cfg.vocab_size} (byte-level BPE trained line by line;
  `<|mask|>`, `<|pad|>`, `<|endoftext|>`, `<|file|>` special tokens).
- **{meta['parameters']:,} parameters**; stored as {meta['storage']} ({meta['weights_bytes'] / 2**20:.1f} MiB of weights).

## Training
- Objective: masked diffusion (MDLM weighting) mixed with inference-shaped corruptions: plain
  t ~ U(eps, 1) masking ({tc['mix']['p_mdlm']:.0%}), whole-line holes of 1 to {tc['mix']['max_hole_lines']} lines followed by
  0-{tc['mix']['max_pads']} `<|pad|>` tokens ({tc['mix']['p_hole']:.0%}), and clean-prefix / masked-rest ({1 - tc['mix']['p_mdlm'] - tc['mix']['p_hole']:.0%}).
  See `dcode/train/objective.py` for why.
- AdamW (betas 0.9/0.95, weight decay {tc['weight_decay']}), peak LR {tc['lr']}, {tc['warmup_steps']} warmup steps then cosine to
  {tc['min_lr_ratio']}x over the time budget, gradient clipping {tc['grad_clip']}, batch {tc['batch_size']} x {tc['seq_len']} tokens.
{_training_line(meta)}
- Validation loss (ELBO per position, held-out packages) by step{' of the last run' if 'started_from' in meta else ''}: {curve or 'n/a'}.
{inputs.notes}

Commands:
```
{inputs.corpus_command}
{inputs.train_command}
{inputs.export_command}
```

## Data
The running Python's standard library and site-packages (`.py` files only). Packages whose
metadata does not declare a permissive license were skipped; generated, minified, vendored,
binary and non-UTF-8 files and exact duplicates were dropped; each package capped at 3 MiB.
{corpus['train_tokens']:,} training tokens, {corpus['val_tokens']:,} validation tokens.

Training packages by license:
{lic_lines}

Skipped: {skipped}.

Held out for validation (never trained on): {', '.join(corpus['heldout_packages'])}.

## Evaluation
Held-out infilling on the validation packages (single-line and 2-10-line holes, seed 0) and
functional infilling (holes cut from functions in `tests/data/functional`, scored by running their
tests). Exact match ignores surrounding whitespace; "parses" compiles the whole filled file;
forward passes / tokens per forward measure the diffusion speed-up (threshold decoding).

{table}
Produced by:
```
{inputs.eval_command}
```
"""
    path = inputs.model_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
