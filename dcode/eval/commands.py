"""`dcode eval`: held-out and functional infilling on a model; prints a table, writes JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from dcode.eval.humaneval import humaneval_multi_tasks, humaneval_tasks
from dcode.eval.harness import (Rechooser, Report, TaskResult, evaluate, ltr_predictor, model_predictor, render_table,
                               summarize)
from dcode.eval.tasks import (InfillTask, default_functional_dir, functional_tasks, heldout_files, heldout_spec, holdout_tasks,
                              load_tasks, save_tasks)

Drafter = Literal["context", "adapter"]
EndingRule = Literal["joint", "mean", "suffix"]  # dcode.diffusion.endings.ENDING_RULES
SINGLE_MAX_TOKENS = 64
MULTI_MAX_TOKENS = 192


def decode_options_for(threshold: float | None, tokens_per_step: int | None, seed: int, best_of: int | None = None,
                       draft_tokens: int = 0, drafter: str = "context", ending: str | None = None):
    """Per-task decoding options: a one-line hole may grow to 64 tokens, a multi-line one to 192
    (bounds only; the engine sizes and grows the hole itself). A one-line hole is known to be
    one line, as the left-to-right baseline knows it."""
    from dcode.diffusion.engine import DecodeOptions

    def options_for(task: InfillTask) -> DecodeOptions:
        return DecodeOptions(threshold=None if tokens_per_step else threshold, tokens_per_step=tokens_per_step,
                             seed=seed, max_tokens=SINGLE_MAX_TOKENS if task.one_line else MULTI_MAX_TOKENS,
                             best_of=best_of, max_lines=1 if task.one_line else None, draft_tokens=draft_tokens,
                             drafter=drafter, ending=ending)

    return options_for


def choose_tasks(
    model_path: str | None = None,
    limit: int = 50,
    data_dir: Path | None = None,
    functional_dir: Path | None = None,
    seed: int = 0,
    functional: bool = True,
    heldout: bool = True,
    multi: bool = True,
    humaneval: int = 0,
    humaneval_multi: int = 0,
) -> tuple[list[InfillTask], list[str], Path | None]:
    """`limit` single-line, `limit` multi-line and up to `limit` functional holes (fixed seed),
    `humaneval` HumanEval single-line and `humaneval_multi` multi-line holes; with the held-out
    packages and the functional folder they came from. `heldout=False` leaves out the held-out
    packages' holes, `multi=False` their multi-line ones (the single-line holes stay the same)."""
    from dcode.model.paths import resolve_model_dir

    spec = heldout_spec(data_dir, resolve_model_dir(model_path)) if heldout else {}
    tasks = holdout_tasks(heldout_files(spec), limit, limit if multi else 0, seed=seed) if heldout else []
    fdir = (functional_dir or default_functional_dir()) if functional else None
    if fdir is not None:
        tasks += functional_tasks(fdir, n=limit, seed=seed)
    if humaneval:
        tasks += humaneval_tasks(humaneval, seed=seed)
    if humaneval_multi:
        tasks += humaneval_multi_tasks(humaneval_multi, seed=seed)
    return tasks, sorted(spec), fdir


def run_eval(
    model_path: str | None = None,
    limit: int = 50,
    data_dir: Path | None = None,
    functional_dir: Path | None = None,
    threshold: float | None = 0.9,
    tokens_per_step: int | None = None,
    seed: int = 0,
    device: str | None = None,
    functional: bool = True,
    on_result=None,
    ltr: bool = False,
    heldout: bool = True,
    multi: bool = True,
    humaneval: int = 0,
    humaneval_multi: int = 0,
    best_of: int | None = None,
    draft_tokens: int = 0,
    drafter: str = "context",
    tasks_file: Path | None = None,
    shard: tuple[int, int] | None = None,
    partial_json: Path | None = None,
    ending: str | None = None,
) -> Report:
    """Load the model, take the holes (`choose_tasks`, or the hole set in `tasks_file`), keep
    shard (i, n)'s share of them (every n-th from the i-th), run the engine on each and score
    them. `ltr`: score the model's pretrained base instead, decoded left to right with token
    healing (the floor to beat). `partial_json`: the report so far is rewritten there after every
    hole (settings "complete": false), so a run stopped early keeps what it scored."""
    from dcode.model.loader import load_model

    from dcode.model.threads import use_threads
    from dcode.settings import load_settings

    threads = use_threads(load_settings(None)[0].threads)  # DCODE_THREADS or the user's config, else the free cores
    if tasks_file is not None:
        tasks, packages, fdir = load_tasks(tasks_file), None, None
    else:
        tasks, packages, fdir = choose_tasks(model_path, limit, data_dir, functional_dir, seed, functional, heldout,
                                             multi, humaneval, humaneval_multi)
    if shard is not None:
        tasks = tasks[shard[0]::shard[1]]
    model = _ltr_base(model_path, device) if ltr else load_model(model_path, device=device)
    options_for = decode_options_for(threshold, tokens_per_step, seed, best_of, draft_tokens, drafter, ending)
    if ltr:
        predict = ltr_predictor(model, lambda task: options_for(task).max_tokens)
    else:
        predict = model_predictor(model, options_for)
    settings = {"decoding": "left-to-right base, token healing" if ltr else model.config.decoder, "best_of": None if ltr else best_of, "draft_tokens": None if ltr else draft_tokens,
                "drafter": None if ltr or not draft_tokens else drafter, "ending": None if ltr else ending, "limit": limit, "seed": seed, "threshold": None if tokens_per_step else threshold,
                "tokens_per_step": tokens_per_step, "device": str(model.device), "heldout_packages": packages,
                "functional_dir": str(fdir) if fdir else None, "tasks_file": str(tasks_file) if tasks_file else None,
                "shard": f"{shard[0]}/{shard[1]}" if shard else None, "threads": threads}
    name = model.name + (" base (left to right)" if ltr else "")
    return _evaluate_and_report(name, settings, tasks, predict, on_result, partial_json)


def rechoose_eval(report_path: Path, tasks_file: Path, rule: str | None = None, best_of: int | None = None,
                  on_result=None, partial_json: Path | None = None) -> Report:
    """The report of a run (`--json`) scored again with each hole's answer chosen from the
    candidates it recorded, by `rule` among its first `best_of` branches (`Rechooser`);
    the holes are those of the run's `--tasks` file that the report holds (a stopped run or a
    shard keeps its share)."""
    from dcode.errors import InputError

    try:
        recorded = Report.from_json(report_path.read_text(encoding="utf-8"))
        chooser = Rechooser(recorded, rule, best_of)  # reads every recorded candidate
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{report_path}: not a dcode eval report ({err})") from None
    tasks = [t for t in load_tasks(tasks_file) if t.id in chooser.by_id]
    if not tasks:
        raise InputError(f"{tasks_file}: none of its holes is in {report_path} (use the --tasks file of that run)")
    settings = {**recorded.settings, "ending": rule, "best_of": best_of, "rechosen_from": str(report_path),
                "tasks_file": str(tasks_file), "kept_recorded": chooser.kept}
    return _evaluate_and_report(recorded.model, settings, tasks, chooser, on_result, partial_json)


def _evaluate_and_report(name: str, settings: dict, tasks: list[InfillTask], predict, on_result,
                         partial_json: Path | None) -> Report:
    start = time.perf_counter()
    done: list[TaskResult] = []

    def report_so_far(complete: bool) -> Report:
        return Report(name, {**settings, "holes": len(tasks), "complete": complete and settings.get("complete", True),
                             "total_wall_s": round(time.perf_counter() - start, 2)}, summarize(done), list(done))

    def record(result) -> None:
        done.append(result)
        if partial_json is not None:
            report_so_far(False).save(partial_json)
        if on_result:
            on_result(result)

    evaluate(tasks, predict, record)
    return report_so_far(True)


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N) with 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise typer.BadParameter(f"{text!r}: I must be at least 0 and below N")
    return index, count


def _ltr_base(model_path: str | None, device: str | None):
    """The pretrained base of an adapted model (dcode-small), without its adapter."""
    from dcode.errors import InputError
    from dcode.model.adapted import is_adapted, load_adapted
    from dcode.model.paths import resolve_model_dir

    model_dir = resolve_model_dir(model_path)
    if not is_adapted(model_dir):
        raise InputError(f"--ltr scores a pretrained base; {model_dir.name} has none (try --model dcode-small)")
    return load_adapted(model_dir, device=device, adapter=False)


def eval_command(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Holes of each kind (single-line, multi-line, functional).")] = 50,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model directory (default: $DCODE_MODEL or the shipped model).")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the full report (every hole) as JSON here; rewritten after every hole while the run goes on.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=1.0, help="Commit every token at least this confident per pass.")] = 0.9,
    tokens_per_step: Annotated[int | None, typer.Option("--tokens-per-step", min=1, help="Fixed schedule instead of the threshold (1 = autoregressive-equivalent baseline).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Corpus directory whose validation packages to use (default: the model's heldout.json).")] = None,
    functional_dir: Annotated[Path | None, typer.Option("--functional", help="Directory of functional tasks (default: tests/data/functional).")] = None,
    no_functional: Annotated[bool, typer.Option("--no-functional", help="Skip the functional (test-running) tasks.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for choosing holes and sampling.")] = 0,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    ltr: Annotated[bool, typer.Option("--ltr", help="Score the model's pretrained base left to right with token healing (the floor to beat).")] = False,
    humaneval: Annotated[int, typer.Option("--humaneval", min=0, help="Also this many HumanEval single-line holes, scored by the problems' tests (needs dcode[eval]).")] = 0,
    humaneval_multi: Annotated[int, typer.Option("--humaneval-multi", min=0, help="Also this many HumanEval multi-line holes (2-5 lines of a solution, one per problem), scored by the tests.")] = 0,
    no_heldout: Annotated[bool, typer.Option("--no-heldout", help="Skip the held-out packages' single- and multi-line holes.")] = False,
    no_multi: Annotated[bool, typer.Option("--no-multi", help="Skip the held-out packages' multi-line holes (the single-line ones stay the same).")] = False,
    best_of: Annotated[int | None, typer.Option("--best-of", min=1, help="Anchored decoding: branches whose endings the suffix chooses from (1 = greedy; default: 4 on one line, 1 for a block).")] = None,
    draft_tokens: Annotated[int, typer.Option("--draft-tokens", min=0, help="Anchored decoding: slots guessed ahead per pass, kept where the base agrees (0 = none).")] = 0,
    drafter: Annotated[Drafter, typer.Option("--drafter", help="What guesses them: context (copied from the text around the hole) or adapter (the trained drafter).")] = "context",
    save_tasks_path: Annotated[Path | None, typer.Option("--save-tasks", help="Write the chosen holes to this JSON file and stop (evaluate them elsewhere with --tasks).")] = None,
    tasks_file: Annotated[Path | None, typer.Option("--tasks", help="Evaluate the holes of this file (from --save-tasks) instead of choosing them.")] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="I/N: only every N-th hole from the I-th (0-based), for parallel runs.")] = None,
    ending: Annotated[EndingRule | None, typer.Option("--ending", help="Anchored decoding: choose the ending by joint log p of hole + suffix head, by the joint per token (mean), or by the suffix's log p alone (default: the measured rule for the hole's shape).")] = None,
    rechoose: Annotated[Path | None, typer.Option("--rechoose", help="Score this --json report again, each answer chosen by --ending among the candidates of its first --best-of branches that the run recorded (no decoding; needs the run's --tasks file).")] = None,
) -> None:
    """Score infilling on held-out packages and on functions with tests."""
    from rich.console import Console

    console = Console()
    part = parse_shard(shard) if shard is not None else None
    if save_tasks_path is not None:
        tasks, _, _ = choose_tasks(model, limit, data, functional_dir, seed, not no_functional, not no_heldout,
                                   not no_multi, humaneval, humaneval_multi)
        chosen = tasks[part[0]::part[1]] if part else tasks
        save_tasks(chosen, save_tasks_path)
        console.print(f"wrote {len(chosen)} holes to {save_tasks_path}")
        return
    if rechoose is not None:
        if tasks_file is None:
            raise typer.BadParameter("--rechoose needs the run's --tasks file")
        report = rechoose_eval(rechoose, tasks_file, ending, best_of, partial_json=json_path)
        kept = report.settings["kept_recorded"]
        if kept:
            console.print(f"{len(kept)} holes kept the run's answer: it left no candidate of their first "
                          f"branches (decode them to score them exactly): {', '.join(kept)}")
    else:
        report = run_eval(model, limit, data, functional_dir, threshold, tokens_per_step, seed, device,
                          functional=not no_functional, ltr=ltr, heldout=not no_heldout, multi=not no_multi,
                          humaneval=humaneval, humaneval_multi=humaneval_multi, best_of=best_of,
                          draft_tokens=draft_tokens, drafter=drafter, tasks_file=tasks_file, shard=part,
                          partial_json=json_path, ending=ending)
    console.print(render_table(report.summaries))
    if json_path is not None:
        report.save(json_path)
        console.print(f"wrote {json_path}")


if __name__ == "__main__":  # until the lead registers it: python -m dcode.eval.commands --limit 5
    typer.run(eval_command)
