"""`dcode train corpus | run | adapt | export | card`: thin Typer wrappers over the training modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(help="Build the training corpus, train a model, export it.", no_args_is_help=True)


@train_app.command("corpus")
def corpus_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory for shards, index, tokenizer.")] = Path("data/corpus"),
    source: Annotated[list[Path] | None, typer.Option("--source", help="Source root (repeatable). Default: stdlib + site-packages.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=1.0, help="Share of packages held out.")] = 0.05,
    vocab_size: Annotated[int, typer.Option("--vocab-size", min=300)] = 8192,
    tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="Reuse this tokenizer.json instead of training one.")] = None,
    max_package_mib: Annotated[float, typer.Option("--max-package-mib", help="Cap per package (0 = none).")] = 3.0,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Tokenizer processes.")] = 2,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Collect permissively licensed Python sources, split by package, tokenize into shards."""
    from dcode.train.corpus import CorpusOptions, build_corpus

    opts = CorpusOptions(
        roots=list(source) if source else None, val_fraction=val_fraction, vocab_size=vocab_size,
        tokenizer_path=tokenizer, workers=workers, seed=seed,
        max_package_bytes=int(max_package_mib * 2**20) or None,
    )
    summary = build_corpus(out, opts, log=typer.echo)
    typer.echo(f"{summary.packages_used} packages used, {summary.packages_skipped} skipped; tokens {summary.tokens}")


@train_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_command(ctx: typer.Context) -> None:
    """Train (masked diffusion). Options as `python -m dcode.train.run --help`: --data, --out,
    --dim, --n-layers, --seq-len, --batch-size, --lr, --minutes, --max-steps, --resume, ..."""
    from dcode.train.run import main

    raise typer.Exit(main(list(ctx.args)))


@train_app.command("adapt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def adapt_command(ctx: typer.Context) -> None:
    """Adapt a pretrained base into a diffusion model with a LoRA (dcode-small). Options as
    `python -m dcode.train.adapt --help`: --base, --out, --recipe a|b, --rank, --seq-len,
    --batch-size, --lr, --minutes, --max-steps, --workers, --device, ..."""
    from dcode.train.adapt import main

    raise typer.Exit(main(list(ctx.args)))


@train_app.command("export")
def export_command(
    run: Annotated[Path, typer.Option("--run", help="Training run directory (holds ckpt.pt).")] = Path("runs/mini"),
    data: Annotated[Path, typer.Option("--data", help="The corpus it was trained on.")] = Path("data/corpus"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")] = Path("weights/dcode-mini"),
    bf16: Annotated[bool, typer.Option("--bf16", help="Store bf16 instead of int8 weights.")] = False,
) -> None:
    """Export a run's checkpoint as a model directory (int8 safetensors + tokenizer)."""
    from dcode.train.export import export_model

    meta = export_model(run, data, out, int8=not bf16)
    typer.echo(f"exported {meta['parameters']:,} parameters, step {meta['state']['step']} -> {out}")


@train_app.command("card")
def card_command(
    model_dir: Annotated[Path, typer.Option("--model", help="Exported model directory.")] = Path("weights/dcode-mini"),
    eval_json: Annotated[Path | None, typer.Option("--eval-json", help="Report from `dcode eval --json`.")] = None,
    eval_cmd: Annotated[str, typer.Option("--eval-command", help="The exact eval command, for the card.")] = "dcode eval",
    train_cmd: Annotated[str, typer.Option("--train-command")] = "dcode train run",
    corpus_cmd: Annotated[str, typer.Option("--corpus-command")] = "dcode train corpus",
    export_cmd: Annotated[str, typer.Option("--export-command")] = "dcode train export",
    notes: Annotated[str, typer.Option("--notes", help="Extra text for the Training section.")] = "",
) -> None:
    """Write the model card (README.md) from training.json and an evaluation report."""
    from dcode.train.export import CardInputs, write_model_card

    path = write_model_card(CardInputs(model_dir, eval_json, eval_cmd, train_cmd, corpus_cmd, export_cmd, notes))
    typer.echo(f"wrote {path}")


if __name__ == "__main__":  # until the lead registers it: python -m dcode.train.commands corpus ...
    train_app()
