"""The options shared by the commands that run the model, and how they merge with the global ones."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Int8Opt = Annotated[Optional[bool], typer.Option("--int8/--no-int8", help="int8 weights on the GPU (Dream/LLaDA).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model directory or name: shipped (dcode-small) or pulled (see `dcode models`). Default: $DCODE_MODEL, else dcode-small once its base is pulled, else dcode-mini.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="auto, float32, bfloat16 or float16.")]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", help="Commit every slot at least this confident per pass.")]
PerStepOpt = Annotated[Optional[int], typer.Option("--tokens-per-step", help="Fixed schedule: commit this many per pass (1 = one token per pass).")]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Cap on denoising passes.")]
BlockOpt = Annotated[Optional[int], typer.Option("--block-size", help="Denoise in blocks of this many tokens, left to right.")]
MaxTokOpt = Annotated[Optional[int], typer.Option("--max-tokens", help="Longest the hole may grow.")]
TempOpt = Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed")]
BestOfOpt = Annotated[Optional[int], typer.Option("--best-of", help="Anchored models (dcode-small): branches whose endings the suffix chooses from (1 = greedy; default: 4 on one line, 1 for a block).")]
InstructionOpt = Annotated[Optional[str], typer.Option(
    "--instruction", "-i", help="What the code should do. Instruct models (Dream/LLaDA family) read it in "
    "their chat template; others as a comment above the hole (not written to the file).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")]
DiffOpt = Annotated[bool, typer.Option("--diff", help="Print only the unified diff (for git apply).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NoLiveOpt = Annotated[bool, typer.Option("--no-live", help="No live denoising view.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Recompute the whole canvas every pass.")]


def given_flags(**kwargs) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


def ctx_flags(ctx: typer.Context, **kwargs) -> dict:
    """The global flags (`dcode --model X fill ...`) overridden by the command's own."""
    merged = dict(ctx.obj or {})
    merged.update(given_flags(**kwargs))
    return merged
