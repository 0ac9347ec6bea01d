"""The dcode-small GPU run in one command: base, data, adapter training, export, evaluation.

A lent GPU machine has no network and takes at most 64 MiB of working tree per call, and the
base GGUF is 94 MiB, so the base travels in parts, one per call while the machine stays warm
(`split` here). An ignored folder that a call does not carry is removed there, so each call
copies its part out of the checkout (`cp .gpu/N/* /root/parts/`), and `run --parts /root/parts`
joins them and checks the sha256 that base.json pins. Each export of the adapter is
copied out (its shards as they are, the rest in one tar: a call brings back at most 8 files of
16 MiB), so a call cut at its time limit still brings an adapter back. The run ends with `dcode eval` for the new adapter, the
shipped dcode-mini and the base read left to right with token healing, and a short table.

    python -m dcode.train.gpu split .gpu                         # here: .gpu/0/, .gpu/1/, .gpu/2/
    python -m dcode.train.gpu run --parts /root/parts --out "$OUT" --minutes 5.5   # there, last call

`eval` instead runs one `dcode eval` of the holes chosen here (`--save-tasks`) for dcode-small,
its base left to right and dcode-mini, each decoder in parallel shards (`--shard I/N`), and
merges the shards into one report per model:

    python -m dcode.train.gpu eval --parts /root/parts --tasks .gpu/2/tasks.json --out "$OUT" --device cuda

weights/dcode-small/README.md gives the device calls in full.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dcode.errors import ModelError
from dcode.model.base import BaseManifest, base_path, locate_base
from dcode.train.adapt import AdaptConfig, adapt

# A device call carries at most 64 MiB of working tree, and the tracked tree (the shipped
# weights included) is about 27 MB of it: 32 MiB parts leave room to spare.
PART_BYTES = 32 * 1024 * 1024
SMALL = Path(__file__).resolve().parents[2] / "weights" / "dcode-small"
MINI = SMALL.parent / "dcode-mini"


def split_base(model_dir: Path, parts_dir: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Cut the (pulled) base of `model_dir` into parts of `part_bytes`, each in its own folder
    `parts_dir/N/` (a call carries one folder; what earlier calls carried stays on the machine)."""
    manifest = BaseManifest.load(model_dir)
    source = locate_base(manifest, model_dir.name)
    parts = []
    with source.open("rb") as f:
        while chunk := f.read(part_bytes):
            part = parts_dir / str(len(parts)) / f"base.part{len(parts)}"
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(chunk)
            parts.append(part)
    return parts


def join_base(model_dir: Path, parts_dir: Path) -> Path:
    """Put the parts back together where `dcode pull` would have put the base; the pinned
    sha256 is checked before it is used."""
    manifest = BaseManifest.load(model_dir)
    target = base_path(manifest)
    parts = sorted(parts_dir.rglob("base.part*"), key=lambda p: int(p.name.removeprefix("base.part")))
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = target.with_suffix(".joining")
    with tmp.open("wb") as out:
        for part in parts:
            data = part.read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != manifest.member_sha256:
        tmp.unlink()
        raise ModelError(f"the joined base has sha256 {digest.hexdigest()}, base.json pins {manifest.member_sha256}")
    os.replace(tmp, target)
    return locate_base(manifest, model_dir.name)


def send_out(model_dir: Path, out_dir: Path) -> list[Path]:
    """Copy a model directory into `out_dir` as few files as a device call can bring back:
    each weight shard as it is (under 14 MiB by construction) and everything else in one
    `<name>.tar`; every file is replaced atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sent = []
    small = []
    for path in sorted(model_dir.iterdir()):
        if path.suffix == ".safetensors":
            tmp = out_dir / f".{path.name}.tmp"
            shutil.copyfile(path, tmp)
            os.replace(tmp, out_dir / path.name)
            sent.append(out_dir / path.name)
        else:
            small.append(path)
    final = out_dir / f"{model_dir.name}.tar"
    tmp = out_dir / f".{final.name}.tmp"
    with tarfile.open(tmp, "w") as tar:
        for path in small:
            tar.add(path, arcname=f"{model_dir.name}/{path.name}")
    os.replace(tmp, final)
    return [*sent, final]


def evaluate_all(model_dir: Path, out_dir: Path, limit: int, device: str | None) -> dict[str, list[dict]]:
    """`dcode eval` for the adapter, dcode-mini and the base left to right; reports to out_dir."""
    from dcode.eval.commands import run_eval

    runs = {"dcode-small": (model_dir, False, "eval-small.json"), "dcode-mini": (MINI, False, "eval-mini.json"),
            "base left-to-right": (model_dir, True, "eval-ltr.json")}
    table = {}
    for label, (path, ltr, name) in runs.items():
        report = run_eval(str(path), limit=limit, device=device, ltr=ltr)
        report.save(out_dir / name)
        table[label] = [asdict(s) for s in report.summaries]
    return table


@dataclass(frozen=True)
class Decoder:
    label: str  # the model's row in the table; several decoders may share one (kinds apart)
    slug: str  # file names under the work folder
    flags: tuple[str, ...]  # `dcode eval` flags beside --tasks/--shard/--json/--device
    shards: int
    kinds: tuple[str, ...] | None = None  # None: every hole of the set


SMALL_FLAGS = ("--model", str(SMALL))
LTR_FLAGS = ("--model", str(SMALL), "--ltr")
# Multi-line holes cost the most passes, so they get their own shards: a kind still running at
# the deadline is stopped alone. Shards sized on an H200 (2026-12-04): with these counts
# `--only small-multi small-he-multi small-func ltr-he-multi ltr-func` (16 processes) finished
# in 452 s and `--only small-short ltr-short mini small-drafts ltr-multi` (11) in 274 s. Context
# drafts leave the answers as they are and only count passes, so they run on single lines.
DECODERS = (
    Decoder("dcode-small", "small-short", SMALL_FLAGS, 2, ("single", "humaneval")),
    Decoder("dcode-small", "small-func", SMALL_FLAGS, 2, ("functional",)),
    Decoder("dcode-small", "small-multi", SMALL_FLAGS, 4, ("multi",)),
    Decoder("dcode-small", "small-he-multi", SMALL_FLAGS, 5, ("humaneval-multi",)),
    Decoder("base left to right", "ltr-short", LTR_FLAGS, 1, ("single", "humaneval")),
    Decoder("base left to right", "ltr-func", LTR_FLAGS, 1, ("functional",)),
    Decoder("base left to right", "ltr-multi", LTR_FLAGS, 4, ("multi",)),
    Decoder("base left to right", "ltr-he-multi", LTR_FLAGS, 4, ("humaneval-multi",)),
    Decoder("dcode-mini", "mini", ("--model", str(MINI)), 2),
    Decoder("dcode-small, 8 drafts from the context", "small-drafts", (*SMALL_FLAGS, "--draft-tokens", "8"), 2,
            ("single", "humaneval")),
)


def chosen_decoders(slugs: list[str] | None) -> tuple[Decoder, ...]:
    """The decoders named by slug (all when none are named); an unknown slug is an error."""
    if not slugs:
        return DECODERS
    known = {d.slug: d for d in DECODERS}
    unknown = [s for s in slugs if s not in known]
    if unknown:
        raise SystemExit(f"unknown decoder {', '.join(unknown)} (choose from {', '.join(known)})")
    return tuple(known[s] for s in dict.fromkeys(slugs))  # a slug named twice runs once


def shard_commands(decoder: Decoder, tasks: Path, work: Path, device: str | None) -> list[list[str]]:
    """One `dcode eval` command line per shard of `decoder`, each writing work/<slug>-<i>.json."""
    base = [sys.executable, "-m", "dcode.eval.commands", "--tasks", str(tasks), *decoder.flags]
    if device:
        base += ["--device", device]
    return [[*base, "--shard", f"{i}/{decoder.shards}", "--json", str(work / f"{decoder.slug}-{i}.json")]
            for i in range(decoder.shards)]


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def evaluate_sharded(tasks_file: Path, out: Path, work: Path, device: str | None, deadline_s: float,
                     decoders: tuple[Decoder, ...] = DECODERS) -> dict[str, dict]:
    """Run every decoder's shards at once (one thread each: on a GPU a decoding pass is a chain
    of small kernels, so several processes keep it busy), stop what is still running at the
    deadline, and merge, per model, its decoders' shards into one report (out/eval-<model>.json).
    A shard writes its report after every hole, so one stopped at the deadline still gives the
    holes it finished. Per model: its summaries and the kinds that did not finish."""
    from dcode.eval.harness import Report, merge_shards, summarize
    from dcode.eval.tasks import load_tasks, save_tasks

    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DCODE_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    holes = load_tasks(tasks_file)
    running = []
    for decoder in decoders:
        subset = tasks_file
        if decoder.kinds is not None:
            subset = work / f"tasks-{decoder.slug}.json"
            save_tasks([t for t in holes if t.kind in decoder.kinds], subset)
        for i, cmd in enumerate(shard_commands(decoder, subset, work, device)):
            log = (work / f"{decoder.slug}-{i}.log").open("w")
            running.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    end = time.monotonic() + deadline_s
    for proc in running:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    table: dict[str, dict] = {}
    for label in dict.fromkeys(d.label for d in decoders):
        reports, unfinished = [], []
        for decoder in (d for d in decoders if d.label == label):
            paths = [work / f"{decoder.slug}-{i}.json" for i in range(decoder.shards)]
            shards = [Report.from_json(p.read_text(encoding="utf-8")) for p in paths if p.is_file()]
            if len(shards) < len(paths) or not all(r.settings.get("complete") for r in shards):
                unfinished += sorted({t.kind for t in holes if decoder.kinds is None or t.kind in decoder.kinds})
            if shards:
                reports.append(merge_shards(shards))
        results = [r for report in reports for r in report.results]
        summaries = summarize(results)
        if reports:
            Report(reports[0].model, {**reports[0].settings, "kinds_unfinished": unfinished}, summaries,
                   results).save(out / f"eval-{_slug(label)}.json")
        table[label] = {"summaries": [asdict(s) for s in summaries], "unfinished": unfinished}
    return table


def print_eval_table(table: dict[str, dict]) -> None:
    """A row per model and kind; a kind stopped at the deadline shows the holes it finished."""
    print(f"{'model':<40} {'holes':<15} {'n':>4} {'exact':>7} {'sim':>6} {'parses':>7} {'tests':>7} {'fwd/hole':>9} {'tok/fwd':>8}")
    for label, entry in table.items():
        for r in entry["summaries"]:
            tests = "-" if r["passed"] is None else f"{r['passed']:.1%}"
            late = "  (stopped at the deadline)" if r["kind"] in entry["unfinished"] else ""
            print(f"{label:<40} {r['kind']:<15} {r['n']:>4} {r['exact']:>7.1%} {r['similarity']:>6.3f} "
                  f"{r['parses']:>7.1%} {tests:>7} {r['forward_passes']:>9.1f} {r['tokens_per_forward']:>8.2f}{late}")
        for kind in sorted(set(entry["unfinished"]) - {r["kind"] for r in entry["summaries"]}):
            print(f"{label:<40} {kind:<15} not one hole finished before the deadline")


def prepare(args: argparse.Namespace) -> Path:
    """The folder that comes back, made; the base joined from its parts when they are given."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.parts:
        print(f"base joined at {join_base(SMALL, Path(args.parts))}", flush=True)
    return out


def run_sharded_eval(args: argparse.Namespace) -> int:
    from dcode.model.adapted import convert_base

    start = time.perf_counter()
    decoders = chosen_decoders(args.only)  # before the slow steps: a misspelt slug fails at once
    out = prepare(args)
    convert_base(locate_base(BaseManifest.load(SMALL), SMALL.name))  # once, not by every shard at the same time
    print(f"base converted in {time.perf_counter() - start:.1f} s", flush=True)
    table = evaluate_sharded(Path(args.tasks), out, Path(args.work), args.device, args.deadline_s, decoders)
    (out / "eval-summary.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"\nwall {time.perf_counter() - start:.1f} s")
    print_eval_table(table)
    return 0


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    out = prepare(args)
    work = Path(args.work) / "dcode-small"
    cfg = AdaptConfig(out_dir=str(work), base=str(SMALL), recipe=args.recipe, rank=args.rank, alpha=args.rank,
                      seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr, minutes=args.minutes,
                      max_steps=args.max_steps, warmup_steps=args.warmup_steps, eval_every=args.eval_every,
                      save_minutes=args.save_minutes, log_every=args.log_every, device=args.device,
                      workers=args.workers, roots=args.roots, init=args.init)
    state = adapt(cfg, log=lambda s: print(s, flush=True), on_export=lambda d: send_out(d, out))
    train_s = time.perf_counter() - start
    table = evaluate_all(work, out, args.eval_limit, args.device) if args.eval_limit else {}
    record = json.loads((work / "training.json").read_text(encoding="utf-8"))
    summary = {"device": record["device"], "tokens": state.tokens_seen, "steps": state.step,
               "train_s": round(state.elapsed_s, 1), "tok_s": record["tok_s"], "mfu_6n": record["mfu_6n"],
               "best_val_loss": state.best_val, "wall_s_train_phase": round(train_s, 1),
               "wall_s_total": round(time.perf_counter() - start, 1), "eval": table}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print_table(summary)
    return 0


def print_table(summary: dict) -> None:
    print(f"\n{summary['device']}: {summary['tokens']:,} tokens in {summary['train_s']} s "
          f"({summary['tok_s']:,} tok/s, MFU {summary['mfu_6n']}), best val loss {summary['best_val_loss']:.4f}, "
          f"wall {summary['wall_s_total']} s")
    print(f"{'model':<20} {'holes':<11} {'n':>4} {'exact':>7} {'tests':>7} {'fwd/hole':>9}")
    for label, rows in summary["eval"].items():
        for r in rows:
            tests = "-" if r["passed"] is None else f"{r['passed']:.1%}"
            print(f"{label:<20} {r['kind']:<11} {r['n']:>4} {r['exact']:>7.1%} {tests:>7} {r['forward_passes']:>9.1f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dcode.train.gpu", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("split", help="cut the pulled base into parts that fit a device call")
    sp.add_argument("parts_dir")
    sp.add_argument("--part-mib", type=int, default=PART_BYTES >> 20)
    rp = sub.add_parser("run", help="join the base, train, export, evaluate")
    rp.add_argument("--parts", help="folder with base.part* (default: the base is already in the cache)")
    rp.add_argument("--out", required=True, help="folder whose files come back ($OUT)")
    rp.add_argument("--work", default="/tmp/dcode-gpu")
    rp.add_argument("--recipe", default="a")
    rp.add_argument("--rank", type=int, default=32)
    rp.add_argument("--init", default=None, help="continue from this exported adapter (e.g. weights/dcode-small)")
    rp.add_argument("--seq-len", type=int, default=1024)
    rp.add_argument("--batch-size", type=int, default=32)
    rp.add_argument("--lr", type=float, default=1e-3)
    rp.add_argument("--minutes", type=float, default=None)
    rp.add_argument("--max-steps", type=int, default=None)
    rp.add_argument("--warmup-steps", type=int, default=100)
    rp.add_argument("--eval-every", type=int, default=200)
    rp.add_argument("--save-minutes", type=float, default=1.0)
    rp.add_argument("--log-every", type=int, default=25)
    rp.add_argument("--workers", type=int, default=12)
    rp.add_argument("--eval-limit", type=int, default=100, help="holes of each kind to evaluate after training (0: none)")
    rp.add_argument("--device", default=None)
    rp.add_argument("--roots", nargs="+", default=None)
    ep = sub.add_parser("eval", help="join the base, run dcode eval of a hole set in parallel shards, merge")
    ep.add_argument("--parts", help="folder with base.part* (default: the base is already in the cache)")
    ep.add_argument("--tasks", required=True, help="the hole set (`dcode eval --save-tasks`)")
    ep.add_argument("--out", required=True, help="folder whose files come back ($OUT)")
    ep.add_argument("--work", default="/tmp/dcode-gpu-eval")
    ep.add_argument("--device", default=None)
    ep.add_argument("--deadline-s", type=float, default=420.0, help="stop shards still running after this long")
    ep.add_argument("--only", nargs="+", metavar="SLUG", help="run only these decoders (e.g. small-multi ltr-he-multi)")
    args = p.parse_args(argv)
    if args.command == "eval":
        return run_sharded_eval(args)
    if args.command == "split":
        for part in split_base(SMALL, Path(args.parts_dir), args.part_mib << 20):
            print(part, part.stat().st_size)
        return 0
    shutil.rmtree(args.work, ignore_errors=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
