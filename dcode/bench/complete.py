"""`dcode bench complete`: `dcode complete` end to end, a fresh process per call as editors run it,
through a warm `dcode serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from dcode.bench.decoding import Row
from dcode.errors import InputError, ModelError

COMPLETE_REQUEST = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 16}


def client_command(model_dir: str | None) -> list[str]:
    """`dcode complete` as an editor runs it, for the model the bench's server runs (a client
    configured for another model would not use that server)."""
    return [sys.executable, "-m", "dcode", "complete", *(["--model", model_dir] if model_dir else [])]


def run_bench_complete(flags: dict, runs: int) -> None:
    """`dcode bench complete`: `dcode complete` (a fresh process per call, as editors run it)
    through a warm `dcode serve` started here on a free port, with its own discovery directory.
    Every call must reach that server: one answered in-process would be timed under the wrong
    label, so it stops the bench."""
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
            command = client_command(server.model_dir)
            walls, served = [], []
            for i in range(runs + 1):  # the first call warms the page cache: not counted
                calls = server.model_calls
                start = time.perf_counter()
                out = subprocess.run(command, input=body, capture_output=True, text=True, env=env, check=False)
                wall = time.perf_counter() - start
                if out.returncode != 0:
                    raise InputError(f"dcode complete failed: {out.stderr.strip() or out.stdout.strip()}")
                if server.model_calls != calls + 1:
                    raise ModelError(f"dcode complete call {i + 1} was answered in-process, not by the server this "
                                     "bench started (the client did not find it): no figures")
                if i:
                    walls.append(wall * 1000)
                    served.append(json.loads(out.stdout)["timings"]["predicted_ms"])
        finally:
            server.close()
            thread.join(10)
    row = Row("dcode complete via server", 0, 0, sum(walls) / 1000, walls)
    model_ms = sorted(served)[len(served) // 2]
    sys.stdout.write(
        f"dcode complete through dcode serve ({server.model_name}, {runs} calls, each answered by the server)\n"
        f"end to end: p50 {row.percentile(0.5):.0f} ms, p90 {row.percentile(0.9):.0f} ms; "
        f"of which the model (median): {model_ms:.0f} ms\n"
    )
