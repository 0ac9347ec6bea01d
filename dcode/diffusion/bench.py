"""`dcode bench speed`: how fast the sampler fills holes, and what each schedule costs in quality.

For one set of held-out holes it runs the same model under several decoding schedules:
(a) one token per forward pass (the autoregressive-equivalent baseline, same model and cache),
(b) fixed schedules of k tokens per pass, (c) confidence-threshold decoding at several thresholds;
each with and without the context KV cache where it matters. It reports tokens/s, forward passes,
tokens per forward, latency percentiles and exact match, then a generation timing at several
lengths. On CUDA it also times one forward step of a model with Dream-7B / LLaDA-8B shapes (random
bf16 weights) against the memory-bandwidth floor (weight bytes / measured copy bandwidth).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from dcode.diffusion.engine import generate, infill
from dcode.diffusion.sampler import DecodeOptions
from dcode.errors import InputError
from dcode.model.loader import LoadedModel

SCHEDULES: list[tuple[str, dict]] = [
    ("1 token/pass", {"tokens_per_step": 1, "threshold": None}),
    ("2 tokens/pass", {"tokens_per_step": 2, "threshold": None}),
    ("4 tokens/pass", {"tokens_per_step": 4, "threshold": None}),
    ("threshold 0.95", {"threshold": 0.95}),
    ("threshold 0.9", {"threshold": 0.9}),
    ("threshold 0.9, no cache", {"threshold": 0.9, "use_cache": False}),
    ("threshold 0.7", {"threshold": 0.7}),
    ("threshold 0.5", {"threshold": 0.5}),
]


@dataclass
class Row:
    name: str
    tokens: int
    passes: int
    wall_s: float
    latencies_ms: list[float]
    exact: float | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    @property
    def tokens_per_forward(self) -> float:
        return self.tokens / self.passes if self.passes else 0.0

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))] if data else 0.0


def _sync(model: LoadedModel) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def timed_infill(model: LoadedModel, row: Row, prefix: str, suffix: str, path: str, options: DecodeOptions):
    """Fill one hole and add its tokens, passes and latency to `row`."""
    _sync(model)
    start = time.perf_counter()
    result = infill(model, prefix, suffix, path=path, options=options)
    _sync(model)
    wall = time.perf_counter() - start
    row.tokens += result.stats.tokens
    row.passes += result.stats.forward_passes
    row.wall_s += wall
    row.latencies_ms.append(wall * 1000)
    return result


def infill_rows(model: LoadedModel, tasks, max_tokens: int) -> list[Row]:
    from dcode.eval.harness import exact_match

    rows = []
    infill(model, tasks[0].prefix, tasks[0].suffix, options=DecodeOptions(max_tokens=8))  # warm-up
    for name, opts in SCHEDULES:
        row = Row(name, 0, 0, 0.0, [])
        hits = 0
        for task in tasks:
            result = timed_infill(model, row, task.prefix, task.suffix, task.path,
                                  DecodeOptions(max_tokens=max_tokens, **opts))
            hits += exact_match(result.text, task.expected)
        row.exact = 100.0 * hits / len(tasks)
        rows.append(row)
    return rows


def complete_row(model: LoadedModel, source: str, requests: int = 10, context_tokens: int = 512) -> Row:
    """Warm single-line completion as an editor asks for it while the user types: a window of
    `context_tokens` tokens of `source` (three quarters before the cursor), the cursor at a line
    start, then one more typed character per request. After the first (warm-up) request the
    model is loaded and, for a causal-context model, the shared prefix is in its cache."""
    tok = model.tokenizer
    ids = tok.encode(source)
    if len(ids) < context_tokens:
        raise InputError(f"the bench source has {len(ids)} tokens, fewer than {context_tokens}")
    text = tok.decode(ids[:context_tokens])
    cut = text.rfind("\n", 0, len(tok.decode(ids[: context_tokens * 3 // 4]))) + 1
    prefix, rest = text[:cut], text[cut:]
    typed = rest[: max(1, min(requests, rest.find("\n") if "\n" in rest else requests))]
    options = DecodeOptions(max_tokens=16, initial_tokens=16)
    infill(model, prefix, rest, path="bench.py", options=options)  # warm-up
    row = Row(f"{context_tokens}-token context", 0, 0, 0.0, [])
    for i in range(requests):
        here = prefix + typed[: i % (len(typed) + 1)]
        timed_infill(model, row, here, rest[len(here) - len(prefix):], "bench.py", options)
    return row


def generation_rows(model: LoadedModel, prompt: str, lengths: list[int]) -> list[Row]:
    rows = []
    for length in lengths:
        if length >= model.config.max_seq_len:
            continue
        for name, opts in (("1 token/pass", {"tokens_per_step": 1, "threshold": None}), ("threshold 0.9", {"threshold": 0.9})):
            options = DecodeOptions(max_tokens=length, initial_tokens=length, block_size=32, **opts)
            _sync(model)
            start = time.perf_counter()
            result = generate(model, prompt, options)
            _sync(model)
            wall = time.perf_counter() - start
            rows.append(Row(f"generate {length}: {name}", result.stats.tokens, result.stats.forward_passes, wall, [wall * 1000]))
    return rows


def bandwidth_floor_rows() -> list[tuple[str, float, float, float]]:
    """(shape, measured ms per forward step, floor ms, ratio) for 7B-class shapes on CUDA."""
    from dcode.model.config import ModelConfig
    from dcode.model.transformer import Transformer

    copy = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(copy)
    for _ in range(3):
        dst.copy_(copy)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        dst.copy_(copy)
    end.record()
    torch.cuda.synchronize()
    bandwidth = 2 * copy.numel() * 10 / (start.elapsed_time(end) / 1000)  # read + write bytes/s
    del copy, dst
    shapes = {
        "Dream-7B": ModelConfig(vocab_size=152064, dim=3584, n_layers=28, n_heads=28, n_kv_heads=4, ffn_dim=18944,
                                tie_embeddings=False, qkv_bias=True),
        "LLaDA-8B": ModelConfig(vocab_size=126464, dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_dim=12288,
                                tie_embeddings=False),
    }
    rows = []
    for name, cfg in shapes.items():
        with torch.device("cuda"):
            net = Transformer(cfg).to(torch.bfloat16).eval()
        tokens = torch.randint(0, cfg.vocab_size, (1, 32), device="cuda")  # one block of active tokens
        with torch.inference_mode():
            for _ in range(3):
                net(tokens)
            torch.cuda.synchronize()
            start.record()
            for _ in range(10):
                net(tokens)
            end.record()
            torch.cuda.synchronize()
        measured = start.elapsed_time(end) / 10
        weight_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
        floor = weight_bytes / bandwidth * 1000
        rows.append((name, measured, floor, measured / floor))
        del net
        torch.cuda.empty_cache()
    return rows


def format_rows(title: str, rows: list[Row]) -> str:
    lines = [title, f"{'schedule':<28} {'tok/s':>8} {'passes':>7} {'tok/pass':>8} {'p50 ms':>8} {'p90 ms':>8} {'exact %':>8}"]
    for r in rows:
        exact = f"{r.exact:8.1f}" if r.exact is not None else f"{'':>8}"
        lines.append(f"{r.name:<28} {r.tokens_per_s:8.1f} {r.passes:7d} {r.tokens_per_forward:8.2f} "
                     f"{r.percentile(0.5):8.1f} {r.percentile(0.9):8.1f} {exact}")
    return "\n".join(lines)


def run_speed_bench(model: LoadedModel, limit: int, seed: int = 0) -> str:
    from dcode.eval.tasks import default_functional_dir, functional_tasks, heldout_files, heldout_spec, holdout_tasks

    try:
        tasks = holdout_tasks(heldout_files(heldout_spec(None, model.path)), limit, limit, seed=seed)
    except InputError:  # a model without a recorded held-out split: use the functional tasks
        tasks = []
    if not tasks and default_functional_dir() is not None:
        tasks = functional_tasks(default_functional_dir(), n=2 * limit, seed=seed)
    device = torch.cuda.get_device_name() if model.device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    parts = [f"model {model.name} · {device} · {str(model.dtype).removeprefix('torch.')} · {len(tasks)} held-out holes"]
    rows = infill_rows(model, tasks, max_tokens=128) if tasks else []
    if rows:
        parts.append(format_rows("infill", rows))
        base = rows[0].tokens_per_s
        best = max(rows[3:], key=lambda r: r.tokens_per_s)
        parts.append(f"fastest threshold schedule ({best.name}): {best.tokens_per_s / base:.2f}x the tokens/s of 1 token/pass, "
                     f"exact match {best.exact - rows[0].exact:+.1f} points")
    parts.append(format_rows("generation", generation_rows(model, "import os\n\n\ndef main():\n", [32, 128])))
    # 512 tokens of context, or what fits beside a 16-token hole in a smaller model's window.
    window = min(512, model.config.max_seq_len - 32)
    source = max((t.full_prefix + t.expected + t.full_suffix for t in tasks), key=len, default="")
    if len(model.tokenizer.encode(source)) >= window:
        parts.append(format_rows("complete: warm single-line requests while typing", [complete_row(model, source, 10, window)]))
    else:
        parts.append(f"complete: skipped (no held-out file of {window} tokens)")
    if model.device.type == "cuda":
        table = ["7B-shape forward step (32 active tokens, bf16 random weights)",
                 f"{'shape':<10} {'ms/step':>9} {'floor ms':>9} {'ratio':>7}"]
        table += [f"{n:<10} {m:9.2f} {f:9.2f} {r:7.2f}" for n, m, f, r in bandwidth_floor_rows()]
        parts.append("\n".join(table))
    else:
        parts.append("7B-shape forward step: skipped (needs a CUDA GPU)")
    return "\n\n".join(parts)


COMPLETE_REQUEST = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 16}


def run_bench_complete(flags: dict, runs: int) -> None:
    """`dcode bench complete`: `dcode complete` (a fresh process per call, as editors run it)
    through a warm `dcode serve` started here on a free port, with its own discovery directory."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from dcode.server.runner import DcodeServer

    with tempfile.TemporaryDirectory(prefix="dcode-bench-") as run_dir:
        env = {**os.environ, "XDG_RUNTIME_DIR": run_dir}
        os.environ["XDG_RUNTIME_DIR"] = run_dir  # where this process's server writes its record
        server = DcodeServer(flags, "127.0.0.1", 0)
        thread = server.start_background()
        try:
            server.load_model()
            server.write_discovery()
            body = json.dumps(COMPLETE_REQUEST)
            command = [sys.executable, "-m", "dcode", "complete"]
            walls, served = [], []
            for i in range(runs + 1):  # the first call warms the page cache: not counted
                start = time.perf_counter()
                out = subprocess.run(command, input=body, capture_output=True, text=True, env=env, check=False)
                wall = time.perf_counter() - start
                if out.returncode != 0:
                    raise InputError(f"dcode complete failed: {out.stderr.strip() or out.stdout.strip()}")
                if i:
                    walls.append(wall * 1000)
                    served.append(json.loads(out.stdout)["timings"]["predicted_ms"])
            calls = server.model_calls
        finally:
            server.close()
            thread.join(10)
    row = Row("dcode complete via server", 0, 0, sum(walls) / 1000, walls)
    model_ms = sorted(served)[len(served) // 2]
    sys.stdout.write(
        f"dcode complete through dcode serve ({server.model_name}, {runs} calls, {calls - 1} timed on the server)\n"
        f"end to end: p50 {row.percentile(0.5):.0f} ms, p90 {row.percentile(0.9):.0f} ms; "
        f"of which the model (median): {model_ms:.0f} ms\n"
    )
