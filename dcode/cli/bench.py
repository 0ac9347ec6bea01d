"""`dcode bench ...`: benchmarks that print figures. The benches themselves live in dcode/bench/,
beside the data path; these commands give them settings and a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dcode.cli import session
from dcode.cli.errors import user_errors
from dcode.cli.options import DeviceOpt, DtypeOpt, ModelOpt, ctx_flags
from dcode.errors import InputError

bench_app = typer.Typer(help="Benchmarks that print figures (context assembly, decoding speed, speed under CPU contention).", no_args_is_help=True)


@user_errors
def run_bench_context(path: Path | None) -> None:
    import sysconfig

    from dcode.bench.context import format_bench, model_token_counter, run_context_bench

    root = path or Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    settings = session.settings_for({})
    sys.stdout.write(format_bench(run_context_bench(root, model_token_counter(settings.model))) + "\n")


@user_errors
def run_bench_speed(flags: dict, limit: int) -> None:
    from dcode.bench.decoding import run_speed_bench

    settings = session.settings_for(flags)
    sys.stdout.write(run_speed_bench(session.load_local(settings, "bench speed"), limit) + "\n")


@user_errors
def run_bench_contention(flags: dict, runs: int) -> None:
    from dcode.bench.contention import FILL_TOKENS, format_contention, run_contention_bench

    settings = session.settings_for(flags)
    model = session.load_local(settings, "bench contention")
    options = settings.decode_options(max_tokens=min(settings.max_tokens, FILL_TOKENS))
    timings = run_contention_bench(model, options, settings.threads, runs)
    sys.stdout.write(format_contention(model.name, timings) + "\n")


@bench_app.command("context")
def bench_context(
    path: Annotated[Optional[Path], typer.Argument(help="Tree to index (default: the Python standard library).")] = None,
) -> None:
    """Cold and warm index time and context-assembly latency on a large tree."""
    run_bench_context(path)


@bench_app.command("complete")
def bench_complete(
    ctx: typer.Context,
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, help="Timed `dcode complete` calls.")] = 20,
    model: ModelOpt = None, device: DeviceOpt = None,
) -> None:
    """`dcode complete` end to end (a fresh process per call) through a running `dcode serve`:
    starts one on a free port, times the thin client's round trips, reports p50/p90."""
    from dcode.bench.complete import run_bench_complete

    user_errors(run_bench_complete)(ctx_flags(ctx, model=model, device=device), runs)


@bench_app.command("lsp")
def bench_lsp(
    ctx: typer.Context,
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, help="Timed requests of each kind.")] = 20,
    model: ModelOpt = None, device: DeviceOpt = None,
) -> None:
    """Inline completion latency through `dcode lsp` (model warm), p50/p90, next to `dcode complete`
    through `dcode serve` for the same request."""
    from dcode.bench.lsp import run_bench_lsp

    user_errors(run_bench_lsp)(ctx_flags(ctx, model=model, device=device), runs)


@bench_app.command("speed")
def bench_speed(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Held-out holes of each kind.")] = 10,
    model: ModelOpt = None, device: DeviceOpt = None, dtype: DtypeOpt = None,
) -> None:
    """Decoding speed per schedule (1 token/pass, k/pass, thresholds) with exact match, and on CUDA
    a 7B-shape forward step against the memory-bandwidth floor."""
    run_bench_speed(ctx_flags(ctx, model=model, device=device, dtype=dtype), limit)


@bench_app.command("contention")
def bench_contention(
    ctx: typer.Context,
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, help="Timed fills in each condition.")] = 3,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="CPU threads for the model (default: the cores free when each condition starts; or DCODE_THREADS).")] = None,
    model: ModelOpt = None, device: DeviceOpt = None,
) -> None:
    """A fill on a quiet machine, then beside a busy loop that keeps one core busy; the target is
    no worse than 2x quiet."""
    run_bench_contention(ctx_flags(ctx, model=model, device=device, threads=threads), runs)


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

    user_errors(run_bench_gpu)(ctx_flags(ctx, device=device).get("device"), json_path, quick, minutes)
