"""`dcode bench gpu` sections that check rather than time: logits parity and end to end.

Correctness: the Dream and LLaDA reference fixtures (tests/fixtures, logits from the upstream
modeling code) and the shipped models run on the device in float32 and must give CPU float32's
logits within the CPU tests' tolerance; in bfloat16 they must agree with them to a stated
tolerance and pick the same token wherever float32's choice is clear. End to end: the user's
commands run as subprocesses on a temporary file, and a canvas that cannot fit must give the
one-line out-of-memory error and exit 3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from dcode.bench.common import BenchContext, one_line
from dcode.errors import EXIT_MODEL, EXIT_NO_EDIT, DcodeError
from dcode.model.loader import LoadedModel, load_model
from dcode.model.paths import shipped_weights_root

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
FIXTURE_NAMES = ("dream-tiny", "llada-tiny")
SHIPPED = ("dcode-mini", "dcode-small")

FP32_ATOL = 1e-4  # tests/model/test_foreign.py and tests/model/test_small.py compare float32 logits at this
# bf16 keeps 8 bits of mantissa: logits may differ by up to this share of their largest magnitude,
# and the argmax must agree wherever float32's top two are further apart than that.
BF16_REL = 0.05

SAMPLE = '''"""Geometry helpers."""
import math


def distance(a, b):
    """Euclidean distance between two points."""
    # dcode: fill


def area(r):
    """Area of a circle of radius r."""
    raise NotImplementedError


def describe(p):
    return f"point at {p}"
'''


def load_shipped(name: str, device: torch.device | str, dtype: str | None = None) -> LoadedModel | str:
    """A shipped model, or why it cannot be loaded here (dcode-small needs its pulled base)."""
    root = shipped_weights_root()
    if root is None or not (root / name / "config.json").is_file():
        return f"{name} is not in weights/"
    try:
        return load_model(root / name, device=str(device), dtype=dtype)
    except DcodeError as err:
        return one_line(err)


def compare_fp32(got: Tensor, ref: Tensor) -> dict:
    diff = (got.float() - ref.float()).abs().max().item()
    return {"max_abs": diff, "tol": FP32_ATOL, "ok": diff <= FP32_ATOL}


def compare_bf16(got: Tensor, ref: Tensor) -> dict:
    """bf16 logits `got` against float32 `ref`, both [T, V]: closeness and argmax agreement."""
    got, ref = got.float(), ref.float()
    tol = BF16_REL * ref.abs().max().item()
    diff = (got - ref).abs().max().item()
    top2 = ref.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > tol
    same = got.argmax(-1) == ref.argmax(-1)
    return {"max_abs": diff, "tol": tol, "argmax_agree": same.float().mean().item(),
            "clear_positions": int(clear.sum()), "ok": diff <= tol and bool(same[clear].all())}


def raw_logits(model: LoadedModel, ids: list[int]) -> Tensor:
    with torch.inference_mode():
        return model.net(torch.tensor([ids], device=model.device))[0].float().cpu()


def parity(load, ids: list[int], device: torch.device, reference: Tensor | None) -> dict:
    """`load(device, dtype)` in float32 on CPU and on `device`, and in bf16 on `device`."""
    cpu = raw_logits(load("cpu", "float32"), ids)
    result = {"device_fp32_vs_cpu": compare_fp32(raw_logits(load(device, "float32"), ids), cpu),
              "device_bf16_vs_cpu": compare_bf16(raw_logits(load(device, "bfloat16"), ids), cpu)}
    if reference is not None:
        result["cpu_fp32_vs_reference"] = compare_fp32(cpu, reference)
    result["ok"] = all(v["ok"] for v in result.values())
    return result


def fixture_parity(name: str, device: torch.device) -> dict:
    folder = FIXTURES / name
    if not (folder / "expected.json").is_file():
        return {"skipped": f"{folder} not found (the fixtures live in the source tree)"}
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    return parity(lambda dev, dt: load_model(folder, device=str(dev), dtype=dt), expected["input_ids"], device,
                  torch.tensor(expected["logits"]))


def shipped_parity(name: str, device: torch.device, quick: bool) -> dict:
    if quick and name != SHIPPED[0]:
        return {"skipped": "quick mode: dcode-mini only"}
    first = load_shipped(name, "cpu")
    if isinstance(first, str):
        return {"skipped": first}
    ids = first.tokenizer.encode(SAMPLE)[:128]

    def load(dev, dt) -> LoadedModel:
        model = load_shipped(name, dev, dt)
        if isinstance(model, str):
            raise RuntimeError(model)
        return model

    return parity(load, ids, device, None)


def verdict(parts: dict[str, dict]) -> str:
    checked = [p for p in parts.values() if "skipped" not in p]
    return "ok" if checked and all(p["ok"] for p in checked) else "fail"


def correctness_section(ctx: BenchContext) -> tuple[dict, list[str]]:
    parts = {name: fixture_parity(name, ctx.device) for name in FIXTURE_NAMES}
    parts.update({name: shipped_parity(name, ctx.device, ctx.quick) for name in SHIPPED})
    lines = [f"  {'model':<12} {'fp32 vs cpu':>12} {'bf16 max|d|':>12} {'bf16 tol':>9} {'argmax':>7} {'vs ref':>9}  verdict"]
    for name, p in parts.items():
        if "skipped" in p:
            lines.append(f"  {name:<12} skipped: {p['skipped']}")
            continue
        fp32, bf16 = p["device_fp32_vs_cpu"], p["device_bf16_vs_cpu"]
        ref = f"{p['cpu_fp32_vs_reference']['max_abs']:9.1e}" if "cpu_fp32_vs_reference" in p else f"{'-':>9}"
        lines.append(f"  {name:<12} {fp32['max_abs']:12.1e} {bf16['max_abs']:12.3f} {bf16['tol']:9.3f} "
                     f"{bf16['argmax_agree']:7.1%} {ref}  {'ok' if p['ok'] else 'MISMATCH'}")
    return {"status": verdict(parts), "fp32_atol": FP32_ATOL, "bf16_rel": BF16_REL, "models": parts}, lines


# --------------------------------------------------------------------------------- end to end


def dcode_env(home: Path, model_dir: Path, max_tokens: int) -> dict[str, str]:
    """The environment of a user's run, with dcode's config, cache and state kept in `home`."""
    env = dict(os.environ, DCODE_MODEL=str(model_dir), DCODE_MAX_TOKENS=str(max_tokens), NO_COLOR="1")
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        env[var] = str(home / var.lower())
    return env


def run_dcode(args: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None,
              timeout: float = 300) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dcode", *args], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    return {"args": args, "rc": done.returncode, "seconds": round(time.perf_counter() - start, 2),
            "stdout": done.stdout, "stderr": done.stderr.strip()}


def applied(args: list[str], repo: Path, env: dict[str, str]) -> dict:
    """Run a command with --yes; a proposal --yes refuses (exit 4: it does not parse, or reaches
    outside its function) is applied with `accept`, as a user would. OK when the file changed."""
    before = (repo / "geo.py").read_text(encoding="utf-8")
    run = run_dcode([*args, "--yes", "--json"], repo, env)
    if run["rc"] == EXIT_NO_EDIT:
        accept = run_dcode(["accept"], repo, env)
        run["accept"] = {"rc": accept["rc"], "stderr": accept["stderr"]}
    run["changed"] = (repo / "geo.py").read_text(encoding="utf-8") != before
    run["ok"] = run["changed"] and run["rc"] in (0, EXIT_NO_EDIT) and run.get("accept", {"rc": 0})["rc"] == 0
    return run


def new_repo(folder: Path) -> Path:
    """A git repository (dcode keeps its pending proposal in .git) holding geo.py."""
    folder.mkdir()
    subprocess.run(["git", "init", "-q", str(folder)], check=False, capture_output=True)
    (folder / "geo.py").write_text(SAMPLE, encoding="utf-8")
    return folder


def refine_run(repo: Path, env: dict[str, str], device: str) -> dict:
    pending = run_dcode(["write", "geo.py::describe", "--diff", "--device", device], repo, env)
    return applied(["refine", "--device", device], repo, env) if pending["rc"] == 0 else pending | {"ok": False}


def complete_run(repo: Path, env: dict[str, str], device: str) -> dict:
    request = {"input_prefix": "def double(x):\n    return ", "input_suffix": "\n", "n_predict": 16}
    run = run_dcode(["complete", "--no-server", "--device", device], repo, env, json.dumps(request))
    try:
        run["ok"] = run["rc"] == 0 and isinstance(json.loads(run["stdout"])["content"], str)
    except (ValueError, KeyError, TypeError):
        run["ok"] = False
    return run


def oom_run(repo: Path, env: dict[str, str], model_dir: Path, device: str) -> dict:
    """A request whose canvas cannot fit: a copy of the model allowed 2^27 positions, asked for a
    hole of that size at once. The first layer's activations alone (2^27 x dim floats, several
    copies) exceed the H200's memory, so it fails in the first forward pass, before any long
    attention runs. Expected: exit 3 and a one-line error that says so (see one_line_error)."""
    positions = 2**27
    big = repo / "long-model"
    shutil.copytree(model_dir, big)
    config = json.loads((big / "config.json").read_text(encoding="utf-8"))
    config["max_seq_len"] = positions + 4096
    (big / "config.json").write_text(json.dumps(config), encoding="utf-8")
    request = {"input_prefix": "x = ", "input_suffix": "\n", "n_predict": positions, "initial_tokens": positions}
    run = run_dcode(["complete", "--no-server", "--device", device, "--model", str(big)], repo, env,
                    json.dumps(request), timeout=180)
    run["said"] = one_line_error(run)
    run["ok"] = run["rc"] == EXIT_MODEL and run["said"] is not None and "memory" in run["said"].lower()
    return run


def one_line_error(run: dict) -> str | None:
    """The error as the user sees it: one `dcode: error:` line on stderr, or (`dcode complete`'s
    editor contract) the message of a JSON error response on stdout; None if neither."""
    lines = run["stderr"].splitlines()
    if len(lines) == 1 and lines[0].startswith("dcode: error:"):
        return lines[0]
    try:
        message = json.loads(run["stdout"])["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return message if isinstance(message, str) and "\n" not in message else None


def end_to_end_section(ctx: BenchContext) -> tuple[dict, list[str]]:
    model_dir = shipped_weights_root() / SHIPPED[0]
    device = str(ctx.device)
    with tempfile.TemporaryDirectory(prefix="dcode-bench-") as tmp:
        root = Path(tmp)
        env = dcode_env(root, model_dir, 16 if ctx.quick else 48)
        if ctx.device.type == "cpu":  # the commands run side by side: one thread each, not a pile-up
            env["OMP_NUM_THREADS"] = "1"
        jobs = {"fill": lambda repo: applied(["fill", "geo.py", "--device", device], repo, env),
                "write": lambda repo: applied(["write", "geo.py::area", "--device", device], repo, env),
                "refine": lambda repo: refine_run(repo, env, device),
                "complete": lambda repo: complete_run(repo, env, device)}
        if ctx.quick:  # two processes fewer; the refine chain still runs `write` (with --diff)
            del jobs["write"]
        # Each command in its own repository, side by side: most of a run is starting Python and
        # loading the model, which the CPU cores do in parallel.
        with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            futures = {name: pool.submit(job, new_repo(root / name)) for name, job in jobs.items()}
            runs = {name: futures[name].result() if name in futures else
                    {"skipped": "quick mode: `write --diff` runs in the refine chain"}
                    for name in ("fill", "write", "refine", "complete")}
        # Alone, after the others: it takes most of the GPU's memory on its way to failing.
        runs["oom"] = (oom_run(new_repo(root / "oom"), env, model_dir, device) if ctx.device.type == "cuda" else
                       {"skipped": "on CPU a canvas that cannot fit would exhaust the host's memory first; CUDA only"})
    lines = []
    for name, run in runs.items():
        if "skipped" in run:
            lines.append(f"  {name:<9} skipped: {run['skipped']}")
            continue
        run.pop("stdout", None)  # the diffs and JSON answers: long, and not what is checked
        said = run.get("said") or run.get("accept", run)["stderr"]  # the failing step's last words
        tail = f" · {said.splitlines()[-1][:100]}" if said and not run["ok"] else ""
        lines.append(f"  {name:<9} exit {run['rc']} · {run['seconds']:6.1f} s · {'ok' if run['ok'] else 'FAIL'}{tail}")
    status = "ok" if all(r.get("ok", True) for r in runs.values()) else "fail"
    return {"status": status, "runs": runs}, lines
