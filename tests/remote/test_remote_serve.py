"""`dcode --endpoint` against a real `dcode serve` (a subprocess with the shipped model, behind a
token): the dcode protocol is detected, confidences come back, refine works in place, the hook
goes through it, the context is the one a local model gets, and a missing key is one line and
exit 3."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dcode.diffusion.sampler import DecodeOptions
from dcode.model.loader import load_model
from dcode.remote.model import connect
from dcode.settings import Settings
from dcode.workflow import Request, context_for, resolve
from test_remote import FILE
from test_remote import dcode as run_cli
from test_remote import free_port, repo  # noqa: F401 (repo is a fixture)
from tests.conftest import REPO_ROOT

TOKEN = "team-secret"
STARTUP_S = 120.0  # a loaded 2-core machine takes several seconds to start it; this is a hang


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCODE_")}
    env.update({f"XDG_{k}": str(tmp / k.lower()) for k in ("CONFIG_HOME", "CACHE_HOME", "STATE_HOME", "RUNTIME_DIR")})
    env.update(NO_COLOR="1", PYTHONPATH=str(REPO_ROOT))
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dcode", "serve", "--port", str(port), "--token", TOKEN],
                            env=env_for(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S  # the model loads before the server answers
        while not healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"dcode serve exited: {proc.stderr.read() if proc.stderr else ''}")
            if time.monotonic() > deadline:
                pytest.fail(f"dcode serve did not answer /health within {STARTUP_S:g} s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def dcode(url: str, *args: str):
    return run_cli("--endpoint", url, *args)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCODE_API_KEY", TOKEN)


def test_fill_and_refine_in_place_through_dcode_serve(server, repo, key):
    done = dcode(server, "fill", "m.py", "--no-live", "--json")
    assert done.exit_code == 0, done.output
    assert '"model": "dcode-mini"' in done.output and "no confidences" not in done.output
    done = dcode(server, "refine", "--no-live")
    assert done.exit_code == 0, done.output
    assert "regenerated" not in done.output  # dcode serve refines in place


def test_a_remote_remask_sends_pieces_and_keeps_the_tokens_it_does_not_remask(server):
    model = connect(Settings(endpoint=server, api_key=TOKEN))
    prefix, suffix = "def add(a, b):\n", "\n\nprint(add(1, 2))\n"
    # A draft's ids are its pieces' text (`PieceTokenizer`), all that a pending proposal keeps
    # for the next process: no id of the server's goes back to it.
    *_, draft = model.infill_stream(prefix, suffix, options=DecodeOptions(max_tokens=12, min_tokens=6, seed=1))
    k = 2
    weakest = set(sorted(range(len(draft.token_ids)), key=lambda i: draft.confidences[i])[:k])
    *_, again = model.refine_stream(prefix, suffix, draft, remask=k,
                                    options=DecodeOptions(max_tokens=12, temperature=1.0, seed=7))
    kept = [(t, c) for i, (t, c) in enumerate(zip(draft.token_ids, draft.confidences)) if i not in weakest]
    got = list(zip(again.token_ids, again.confidences))
    # k slots were re-masked (one that came out a pad is dropped); the server got exactly our
    # tokens and confidences back, so the kept ones return unchanged and in order.
    assert len(kept) <= len(got) <= len(draft.token_ids)
    assert in_order(kept, got)


def in_order(kept: list[tuple[int, float]], got: list[tuple[int, float]]) -> bool:
    """Whether every (token, confidence) of `kept` is in `got`, in the same order."""
    rest = iter(got)
    return all(any(t == u and pytest.approx(c) == d for u, d in rest) for t, c in kept)


def test_the_hook_goes_through_dcode_serve(server, repo, key):
    subprocess.run(["git", "add", "m.py"], cwd=repo, check=True)
    done = dcode(server, "hook", "run", "--attempts", "1")
    # dcode-mini rarely writes a verified fill: the hook either fixes the file or says it could
    # not; what matters is that it ran on the server's model, not that it skipped.
    assert done.exit_code == 1 and "m.py" in done.output, done.output
    assert "cannot load the model" not in done.output


def test_a_missing_key_is_one_line_and_exit_3(server, repo):
    done = dcode(server, "fill", "m.py", "--no-live")
    assert done.exit_code == 3
    assert done.output.strip().splitlines() == [
        f"dcode: error: {server}/props: HTTP 401, the server refused the API key (set DCODE_API_KEY): "
        "missing or wrong bearer token"]


def test_the_same_request_gathers_the_same_context_locally_and_through_dcode_serve(server, repo):
    # A file longer than dcode-mini's window: the prefix and suffix are cut, so how their tokens
    # are counted decides what the model sees. A server's model is counted in its own tokens.
    body = "".join(f"def step_{i}(values):\n    return [v * {i} + {i} for v in values if v]\n\n\n" for i in range(40))
    (repo / "m.py").write_text(body + FILE + body, encoding="utf-8")
    local = load_model(device="cpu")  # the shipped model, which the server runs
    remote = connect(Settings(endpoint=server, api_key=TOKEN))
    assert remote.name == local.name and remote.config.max_seq_len == local.config.max_seq_len
    target = resolve(Request("m.py"))
    _, here = context_for(target, local, Settings())
    _, there = context_for(target, remote, Settings())
    assert here.truncated and remote.counts_exactly
    assert (there.prefix, there.suffix) == (here.prefix, here.suffix)
    assert [(c.path, c.text) for c in there.chunks] == [(c.path, c.text) for c in here.chunks]
