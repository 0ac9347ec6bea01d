"""`dcode serve`: the HTTP server, its discovery file, and `dcode complete` going through it.

Every server listens on 127.0.0.1 port 0 (a free port) and every HTTP call has a timeout.
"""

from __future__ import annotations

import _thread
import http.client
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from dcode.errors import InputError
from dcode.model.checkpoint import save_checkpoint
from dcode.model.loader import build_model
from dcode.complete.request import parse_request
from dcode.complete.response import apply_stop
from dcode.server import (
    DcodeServer,
    ServerInfo,
    complete_stdio_with_server,
    complete_via_server,
    find_server,
    resolve_bind,
    run_server,
    runtime_dir,
)
from dcode.server.discovery import records_dir
from tests.conftest import tiny_config

TIMEOUT = 10.0
REQUEST = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 8}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    model = build_model(tiny_config(tiny_tokenizer), tiny_tokenizer, device="cpu", seed=0)
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_checkpoint(path, model.net.state_dict(), model.config, dtype=torch.float32)
    tiny_tokenizer.save(path / "tokenizer.json")
    return path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model gains nothing from OpenMP, and on a busy 2-core CI box two spinning OpenMP
    threads turn 5 ms calls into seconds. New threads (the server's model thread) take this value."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path) -> Path:
    """A private runtime dir and no user config or DCODE_* settings leaking in from the machine."""
    run = tmp_path / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in list(os.environ):
        if name.startswith("DCODE_"):
            monkeypatch.delenv(name)
    return run


@pytest.fixture
def flags(model_dir) -> dict:
    return {"model": str(model_dir), "device": "cpu"}


@pytest.fixture
def start(flags) -> Iterator[Callable[..., DcodeServer]]:
    """Start a server in a background thread; every one started is stopped at teardown."""
    started: list[tuple[DcodeServer, threading.Thread]] = []

    def make(**options: Any) -> DcodeServer:
        server = DcodeServer(options.pop("flags", flags), "127.0.0.1", 0, **options)
        started.append((server, server.start_background()))
        return server

    yield make
    for server, thread in started:
        server.shutdown()
        server.close()
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def call(server: DcodeServer | ServerInfo, method: str, path: str, body: Any = None, headers: dict | None = None,
         raw: bytes | None = None) -> tuple[int, dict, http.client.HTTPResponse]:
    """One request on a fresh connection: (status, JSON body, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=payload, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- endpoints ---------------------------------------------------------------------------------

def test_health_reports_the_model_and_whether_it_is_loaded(start):
    server = start()
    assert call(server, "GET", "/health")[:2] == (200, {"status": "ok", "model": "tiny", "loaded": False})
    assert call(server, "POST", "/infill", REQUEST)[0] == 200
    assert call(server, "GET", "/health")[1]["loaded"] is True


def test_infill_answers_the_complete_contract(start):
    server = start()
    status, body, response = call(server, "POST", "/infill", REQUEST)
    assert status == 200 and response.getheader("Content-Type").startswith("application/json")
    assert isinstance(body["content"], str) and "error" not in body
    assert 1 <= body["tokens_predicted"] <= 8
    assert body["timings"]["predicted_ms"] >= 0 and body["timings"]["forward_passes"] >= 1
    assert body["model"] == "tiny"
    assert server.model_calls == 1


def test_llama_vim_request_shape_is_understood(start):
    """llama.vim sends `prompt` (the current line left of the cursor), samplers, timing budgets,
    and `n_predict: 0` warm-ups; all must answer 200."""
    server = start()
    warmup = {"input_prefix": "", "input_suffix": "", "prompt": "", "n_predict": 0, "samplers": [],
              "input_extra": [{"filename": "a.py", "text": "x = 1\n", "time": [1, 2]}], "t_max_predict_ms": 1}
    status, body, _ = call(server, "POST", "/infill", warmup)
    assert status == 200 and body["content"] == "" and body["tokens_predicted"] == 0
    assert call(server, "GET", "/health")[1]["loaded"] is True  # the warm-up loaded the model
    fim = {"input_prefix": "def f(x):\n", "input_suffix": "\n", "prompt": "    return ", "n_predict": 8,
           "n_indent": 4, "top_k": 40, "top_p": 0.99, "stream": False, "samplers": ["top_k", "top_p", "infill"],
           "cache_prompt": True, "t_max_prompt_ms": 500, "t_max_predict_ms": 1500, "response_fields": ["content"]}
    status, body, _ = call(server, "POST", "/infill", fim)
    assert status == 200 and list(body) == ["content"] and isinstance(body["content"], str)  # response_fields


def test_the_contract_appends_prompt_and_maps_the_time_budget():
    request = parse_request({"input_prefix": "a\n", "prompt": "  b", "t_max_predict_ms": 250})
    assert request.prefix == "a\n  b" and request.options["deadline_s"] == 0.25
    assert parse_request({"deadline_ms": 10, "t_max_predict_ms": 250}).options["deadline_s"] == 0.01
    # The hook's one-line repairs reach a server as these two.
    options = parse_request({"max_lines": 1, "best_of": 2}).options
    assert (options["max_lines"], options["best_of"]) == (1, 2)


def test_openai_completions(start):
    server = start()
    status, body, _ = call(server, "POST", "/v1/completions",
                           {"model": "tiny", "prompt": "def add(a, b):\n", "suffix": "\n", "max_tokens": 4,
                            "temperature": 0})
    assert status == 200
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-") and body["model"] == "tiny"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert isinstance(choice["text"], str) and choice["index"] == 0 and choice["logprobs"] is None
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert 1 <= usage["completion_tokens"] <= 4 and usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert call(server, "GET", "/v1/models")[1]["data"][0]["id"] == "tiny"


def test_openai_completions_for_a_model_the_server_does_not_run_is_404(start):
    server = start()
    status, body, _ = call(server, "POST", "/v1/completions", {"model": "gpt-4", "prompt": "x", "max_tokens": 2})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == "model"
    assert "'gpt-4' does not exist" in body["error"]["message"] and "'tiny'" in body["error"]["message"]
    assert server.model_calls == 0  # refused before the model ran
    assert call(server, "POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200  # none named: ours
    assert call(server, "GET", "/v1/models/gpt-4")[1]["error"]["code"] == "model_not_found"


def test_n_probs_is_refused_in_a_sentence_that_reads_well(start):
    status, body, _ = call(start(), "POST", "/infill", {**REQUEST, "n_probs": 5})
    assert status == 400 and body["error"]["message"] == (
        "n_probs (token probabilities) is not supported by dcode serve; "
        "each token's confidence is in the answer's `dcode.confidences`")


@pytest.fixture
def causal_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny causal-context model (as dcode-small is): its context's keys/values are computed
    once per request, in the first pass."""
    model = build_model(tiny_config(tiny_tokenizer, causal_context=True), tiny_tokenizer, device="cpu", seed=0)
    path = tmp_path_factory.mktemp("models") / "tiny-causal"
    save_checkpoint(path, model.net.state_dict(), model.config, dtype=torch.float32)
    tiny_tokenizer.save(path / "tokenizer.json")
    return path


@pytest.mark.parametrize("causal", [False, True])
def test_timings_measure_the_prompt(start, model_dir, causal_model_dir, causal):
    """prompt_ms: gathering the context and tokenizing the prompt, and for a causal-context model
    computing the context's keys/values (taken out of predicted_ms, where the first pass did it)."""
    server = start(flags={"model": str(causal_model_dir if causal else model_dir), "device": "cpu"})
    request = {**REQUEST, "input_extra": [{"filename": "util.py", "text": "def sub(a, b):\n    return a - b\n" * 20}]}
    timings = call(server, "POST", "/infill", request)[1]["timings"]
    assert timings["prompt_ms"] > 0 and timings["predicted_ms"] > 0
    assert timings["prompt_per_second"] == pytest.approx(timings["prompt_n"] * 1000 / timings["prompt_ms"], rel=0.01)
    encoded = server.completer.model.prefix_cache.compute_s
    assert (encoded > 0) == causal
    assert timings["prompt_ms"] >= encoded * 1000 - 0.001


@pytest.mark.parametrize("body", [{"prompt": 5}, {"prompt": "x", "suffix": 3}, {"prompt": "x", "max_tokens": 0},
                                  {"prompt": "x", "temperature": "hot"}, {"prompt": "x", "n": 0},
                                  {"prompt": [[1, 2]]}, {"prompt": "x", "logprobs": 3}, {"prompt": "x", "echo": True},
                                  {"prompt": "x", "stop": 7}, {"prompt": "x", "stream": "yes"}, [1]])
def test_openai_completions_rejects_bad_fields(start, body):
    status, answer, _ = call(start(), "POST", "/v1/completions", body)
    assert status == 400 and answer["error"]["code"] == "invalid_request" and answer["error"]["message"]


def test_stop_sequences_cut_at_the_earliest():
    assert apply_stop("abc;def\nx", ["\n", ";"]) == ("abc", ";")
    assert apply_stop("abc", ["z"]) == ("abc", "")


# -- rejected requests -------------------------------------------------------------------------

def test_oversized_body_gets_413_and_the_server_lives_on(start):
    server = start(max_body_bytes=256)
    big = {**REQUEST, "input_prefix": "x" * 4000}
    status, body, _ = call(server, "POST", "/infill", big)
    assert status == 413 and "256" in body["error"]["message"]
    assert server.model_calls == 0
    assert call(server, "POST", "/infill", REQUEST)[0] == 200


def test_a_huge_body_is_refused_unread_and_the_connection_closed(start):
    server = start(max_body_bytes=256)
    # raw_exchange reads until the server closes: it returns only because the connection is closed.
    huge = b"POST /infill HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n\r\n{"
    status, body = raw_exchange(server, huge)
    assert status.startswith(b"HTTP/1.1 413") and body["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("raw, code", [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b'{"input_prefix": 5}', "invalid_request"),
    (b'{"n_predict": "many"}', "invalid_request"),
    (b'{"input_extra": "oops"}', "invalid_request"),
    (b'{"deadline_ms": -1}', "invalid_request"),
    (b'{"min_tokens": -1}', "invalid_request"),
    (b'{"initial_tokens": 2.5}', "invalid_request"),
    (b'{"max_lines": 0}', "invalid_request"),
    (b'{"best_of": 0}', "invalid_request"),
    (b"[1, 2]", "invalid_request"),
    (b'{"stream": "yes"}', "invalid_request"),
    (b'{"n_predict": -2}', "invalid_request"),
    (b'{"n_probs": 5}', "invalid_request"),
    (b"", "invalid_json"),
])
def test_malformed_requests_get_400_with_a_reason(start, raw, code):
    server = start()
    status, body, _ = call(server, "POST", "/infill", raw=raw, headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == code and body["error"]["message"]
    assert call(server, "GET", "/health")[0] == 200


def test_a_chunked_body_is_read_and_the_connection_kept(start):
    server = start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        encoded = json.dumps(REQUEST).encode()
        chunks = [encoded[:5], encoded[5:20], encoded[20:]]
        for _ in range(2):  # the whole body was consumed, so the same connection serves a second request
            conn.request("POST", "/infill", body=iter(chunks), encode_chunked=True)
            response = conn.getresponse()
            assert response.status == 200 and "content" in json.loads(response.read())
    finally:
        conn.close()
    assert server.model_calls == 2


def test_chunk_trailers_are_read_so_the_connection_stays_usable(start):
    server = start()
    body = json.dumps(REQUEST).encode()
    chunked = b"%x\r\n%s\r\n0\r\nX-Checksum: 1\r\n\r\n" % (len(body), body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /infill HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
        assert _read_one_reply(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_one_reply(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("body, status", [
    (b"200\r\n" + b"x" * 0x200 + b"\r\n", b"413"),  # one chunk already over the 256-byte limit
    (b"zz\r\n", b"400"),  # not a chunk: uvicorn's parser refuses it
    (b"", b"400"),  # neither Content-Length nor chunked: an empty body, which is not JSON
])
def test_bad_or_oversized_bodies_without_a_length(start, body, status):
    server = start(max_body_bytes=256)
    framing = b"Transfer-Encoding: chunked\r\n" if body else b""
    request = b"POST /infill HTTP/1.1\r\nHost: 127.0.0.1\r\n" + framing + b"\r\n" + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 " + status)
    assert server.model_calls == 0
    assert call(server, "GET", "/health")[0] == 200


def _read_one_reply(sock: socket.socket) -> bytes:
    """A reply the server may keep the connection open after: read its head, then Content-Length bytes."""
    stream = sock.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += stream.readline()
    fields = {k.lower(): v for k, v in (line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)}
    return head + stream.read(int(fields[b"content-length"]))


def test_tokenize_answers_with_the_models_token_ids(start, tiny_tokenizer):
    server = start()
    status, body, _ = call(server, "POST", "/tokenize", {"content": "def add(a, b):\n\treturn a + b\n"})
    assert status == 200 and body["tokens"] == tiny_tokenizer.encode("def add(a, b):\n\treturn a + b\n")
    status, body, _ = call(server, "POST", "/tokenize", {"text": "x"})
    assert status == 400 and "content" in body["error"]["message"]


def test_bearer_token(start):
    server = start(token="s3cret")
    status, body, response = call(server, "POST", "/infill", REQUEST)
    assert status == 401 and response.getheader("WWW-Authenticate") == "Bearer"
    assert call(server, "POST", "/infill", REQUEST, {"Authorization": "Bearer nope"})[0] == 401
    assert call(server, "POST", "/v1/completions", {"prompt": "x"}, {"Authorization": "Basic s3cret"})[0] == 401
    assert call(server, "POST", "/infill", REQUEST, {"Authorization": "Bearer s3cret"})[0] == 200
    assert call(server, "GET", "/health")[0] == 200  # discovery and editors probe health without it
    assert server.model_calls == 1


def test_unknown_path_and_wrong_method(start):
    server = start()
    status, body, _ = call(server, "GET", "/nope")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, _, response = call(server, "GET", "/infill")
    assert status == 405 and response.getheader("Allow") == "POST"
    assert call(server, "POST", "/health", {})[0] == 405
    assert call(server, "DELETE", "/v1/completions")[0] == 405


def raw_exchange(server: DcodeServer, request: bytes) -> tuple[bytes, dict]:
    """Send bytes as they are; (status line, JSON body) of the reply, read until the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        reply = sock.makefile("rb").read()
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_garbage_and_unknown_methods_are_refused_and_the_server_lives_on(start):
    """uvicorn's HTTP parser answers what is not HTTP (its own plain-text 400); what parses
    reaches our routes and gets our JSON errors."""
    server = start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.makefile("rb").read().startswith(b"HTTP/1.1 400")
    status, body = raw_exchange(server, b"BREW /infill HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 405") and body["error"]["code"] == "method_not_allowed"
    assert call(server, "GET", "/health")[0] == 200


def test_a_foreign_host_header_is_refused(start):
    """A web page that rebinds its DNS name to 127.0.0.1 still sends its own Host."""
    server = start()
    status, body, _ = call(server, "POST", "/infill", REQUEST, {"Host": "evil.example:80"})
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert call(server, "GET", "/health", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_an_exception_becomes_a_500_not_a_dead_server(start, capsys):
    server = start()

    def explode(data):
        raise RuntimeError("boom")

    server.completer.answer = explode
    status, body, _ = call(server, "POST", "/infill", REQUEST)
    assert status == 500 and body["error"]["code"] == "internal_error" and "boom" in body["error"]["message"]
    del server.completer.answer  # back to the class's method
    assert call(server, "POST", "/infill", REQUEST)[0] == 200


# -- queueing ----------------------------------------------------------------------------------

def test_a_burst_of_concurrent_requests_is_served_one_at_a_time(start):
    server = start()
    answer = server.completer.answer
    active, peak = [0], [0]
    guard = threading.Lock()

    def tracked(data):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.005)  # widen the window in which an overlap would show
            return answer(data)
        finally:
            with guard:
                active[0] -= 1

    server.completer.answer = tracked
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: call(server, "POST", "/infill", {**REQUEST, "seed": i}), range(16)))
    assert [status for status, _, _ in results] == [200] * 16
    assert all(isinstance(body["content"], str) for _, body, _ in results)
    assert peak[0] == 1 and server.model_calls == 16
    assert call(server, "GET", "/health")[1]["status"] == "ok"


def gate(server: DcodeServer) -> tuple[threading.Event, list[int]]:
    """Make model calls wait for the returned event (as if a long completion were running);
    the list records the `seed` of each call in the order the model ran them."""
    answer, opened, order = server.completer.answer, threading.Event(), []

    def held(data):
        order.append(data.get("seed"))
        assert opened.wait(TIMEOUT)
        return answer(data)

    server.completer.answer = held
    return opened, order


def test_requests_run_in_arrival_order(start):
    server = start()
    opened, order = gate(server)
    with ThreadPoolExecutor(5) as pool:
        futures = []
        for seed in range(5):
            futures.append(pool.submit(call, server, "POST", "/infill", {**REQUEST, "seed": seed}))
            assert wait_for(lambda: server.pending == seed + 1)  # queued before the next one is sent
        opened.set()
        assert [f.result(TIMEOUT)[0] for f in futures] == [200] * 5
    assert order == [0, 1, 2, 3, 4]


def test_a_full_queue_answers_503(start):
    server = start(max_queue=1)
    opened, _ = gate(server)
    try:
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(call, server, "POST", "/infill", REQUEST)
            assert wait_for(lambda: server.pending == 1)
            waiting = pool.submit(call, server, "POST", "/infill", REQUEST)
            assert wait_for(lambda: server.pending == 2)
            status, body, _ = call(server, "POST", "/infill", REQUEST)
            assert status == 503 and body["error"]["code"] == "server_busy"
            opened.set()
            assert running.result(TIMEOUT)[0] == 200 and waiting.result(TIMEOUT)[0] == 200
    finally:
        opened.set()


def test_a_client_that_hangs_up_while_queued_is_skipped(start):
    server = start()
    opened, _ = gate(server)
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(call, server, "POST", "/infill", REQUEST)
            assert wait_for(lambda: server.pending == 1)
            body = json.dumps(REQUEST).encode()
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
                sock.sendall(b"POST /infill HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                assert wait_for(lambda: server.pending == 2)
            opened.set()
            assert running.result(TIMEOUT)[0] == 200
        assert wait_for(lambda: server.dropped == 1)
        assert server.model_calls == 1 and server.pending == 0
    finally:
        opened.set()


# -- idle unload -------------------------------------------------------------------------------

def test_idle_unload_drops_the_model_and_the_next_request_reloads_it(start):
    # Every check waits for an event rather than racing the 0.2 s timer on a busy machine.
    server = start(idle_unload_s=0.2)
    assert call(server, "POST", "/infill", REQUEST)[0] == 200
    assert wait_for(lambda: server.unloads == 1, 5.0)
    assert call(server, "GET", "/health")[1]["loaded"] is False and server.completer.model is None
    status, body, _ = call(server, "POST", "/infill", REQUEST)  # loads the model again
    assert status == 200 and isinstance(body["content"], str)
    assert wait_for(lambda: server.unloads == 2, 5.0)  # so it was loaded, and idled out again


def test_no_unload_while_a_request_is_running_or_queued(start):
    server = start()
    server.idle_unload_s = 0.01  # no watcher thread: we call maybe_unload ourselves
    server.load_model()
    opened, _ = gate(server)
    try:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(call, server, "POST", "/infill", REQUEST)
            assert wait_for(lambda: server.pending == 1)
            server._last_activity = time.monotonic() - 1
            assert not server.maybe_unload() and server.completer.model is not None
            opened.set()
            assert running.result(TIMEOUT)[0] == 200
    finally:
        opened.set()
    assert wait_for(lambda: server.pending == 0)
    time.sleep(0.02)
    assert server.maybe_unload() and server.completer.model is None


# -- binding -----------------------------------------------------------------------------------

def test_resolve_bind(capsys):
    assert resolve_bind(None, False) == "127.0.0.1"
    assert resolve_bind("localhost", False) == "localhost"
    assert resolve_bind("127.0.0.2", False) == "127.0.0.2"
    assert resolve_bind("[::1]", False) == "::1"
    for host in ("0.0.0.0", "192.168.1.5", "example.com", "::"):
        with pytest.raises(InputError, match="--host"):
            resolve_bind(host, False)
    assert capsys.readouterr().err == ""
    assert resolve_bind("0.0.0.0", True) == "0.0.0.0"
    assert "warning" in capsys.readouterr().err


# -- discovery ---------------------------------------------------------------------------------

def test_discovery_record_is_private_found_and_removed(start, isolated_env, model_dir):
    server = start(token="t")
    path = server.write_discovery()
    assert path == isolated_env / "dcode" / "servers" / f"{os.getpid()}-{server.port}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    record = json.loads(path.read_text())
    assert record == {"pid": os.getpid(), "host": "127.0.0.1", "port": server.port, "token_required": True,
                      "model": str(model_dir.resolve())}
    info = find_server()
    assert info == ServerInfo(os.getpid(), "127.0.0.1", server.port, True, str(model_dir.resolve()))
    server.close()
    assert not path.exists()


def test_runtime_dir_falls_back_to_the_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert runtime_dir() == tmp_path / "cache" / "dcode" / "run"
    assert records_dir(create=True).parent == runtime_dir() and records_dir().is_dir()


def test_find_server_ignores_stale_and_broken_records(start):
    server = start()
    path = records_dir(create=True) / "record.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    record = {"pid": int(dead.stdout), "host": "127.0.0.1", "port": server.port, "token_required": False, "model": None}
    path.write_text(json.dumps(record))
    assert find_server() is None  # the process is gone, even though something answers on the port
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        free_port = closed.getsockname()[1]
    path.write_text(json.dumps({**record, "pid": os.getpid(), "port": free_port}))
    assert find_server() is None  # alive pid, nothing listening
    for junk in ("{", "[]", json.dumps({**record, "pid": 0}), json.dumps({**record, "port": "x"})):
        path.write_text(junk)
        assert find_server() is None
    path.unlink()
    assert find_server() is None


def test_two_servers_keep_their_own_records(start, flags):
    """A second server neither overwrites nor, on exit, deletes the first one's record, and the
    first stays found (the issue: `dcode complete` silently loaded the model in-process)."""
    first, second = start(), start()
    first_record, second_record = first.write_discovery(), second.write_discovery()
    assert first_record != second_record
    second.shutdown()
    second.close()
    assert first_record.exists() and not second_record.exists()
    assert find_server().port == first.port
    code, (response,) = run_complete(flags, json.dumps(REQUEST))
    assert code == 0 and first.model_calls == 1


def test_a_dead_servers_record_is_skipped_for_a_live_one(start):
    live = start()
    live.write_discovery()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    stale = records_dir() / f"{int(dead.stdout)}-1.json"
    stale.write_text(json.dumps({"pid": int(dead.stdout), "host": "127.0.0.1", "port": 1, "token_required": False,
                                 "model": None}))
    os.utime(stale, (time.time() + 60, time.time() + 60))  # newest, so it is tried first
    assert find_server().port == live.port
    assert stale.exists()  # not ours to delete


def test_complete_via_server_returns_none_when_unreachable(start):
    server = start()
    info = ServerInfo(os.getpid(), "127.0.0.1", server.port, False, None)
    assert complete_via_server(info, REQUEST, timeout=TIMEOUT)["content"] is not None
    server.shutdown()
    server.close()
    assert complete_via_server(info, REQUEST, timeout=1.0) is None


# -- `dcode complete` through the server ---------------------------------------------------------

def run_complete(flags: dict, text: str, jsonl: bool = False, **options: Any) -> tuple[int, list[dict]]:
    out = io.StringIO()
    code = complete_stdio_with_server(io.StringIO(text), out, flags, jsonl, **options)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def test_complete_uses_a_running_server(start, flags):
    server = start()
    server.write_discovery()
    code, (response,) = run_complete(flags, json.dumps(REQUEST))
    assert code == 0 and isinstance(response["content"], str) and response["model"] == "tiny"
    assert server.model_calls == 1
    lines = "\n".join([json.dumps(REQUEST), "{broken", "", json.dumps({**REQUEST, "seed": 3})]) + "\n"
    code, responses = run_complete(flags, lines, jsonl=True)
    assert code == 0 and len(responses) == 4  # one per line, the blank one included
    assert responses[1]["error"]["code"] == responses[2]["error"]["code"] == "invalid_json"
    assert "error" not in responses[3]
    assert server.model_calls == 3
    code, (response,) = run_complete(flags, json.dumps({"input_prefix": 1}))
    assert code == 2 and response["error"]["code"] == "invalid_request"


def test_complete_without_a_server_answers_in_process(flags):
    code, (response,) = run_complete(flags, json.dumps(REQUEST))
    assert code == 0 and isinstance(response["content"], str) and response["model"] == "tiny"


def test_complete_skips_a_server_it_should_not_use(start, flags, model_dir, tmp_path):
    server = start()
    server.write_discovery()
    assert run_complete(flags, json.dumps(REQUEST), use_server=False)[0] == 0
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    code, (response,) = run_complete({**flags, "model": str(other)}, json.dumps(REQUEST))
    assert code == 0 and response["model"] == "other"
    assert server.model_calls == 0
    # Without a model of its own choosing, the caller takes the server's.
    assert run_complete({"device": "cpu"}, json.dumps(REQUEST))[0] == 0
    assert server.model_calls == 1


def test_complete_needs_the_token_of_a_protected_server(start, flags):
    server = start(token="s3cret")
    server.write_discovery()
    assert run_complete(flags, json.dumps(REQUEST))[0] == 0
    assert server.model_calls == 0
    assert run_complete(flags, json.dumps(REQUEST), token="s3cret")[0] == 0
    assert server.model_calls == 1


# -- the CLI entry -----------------------------------------------------------------------------

def test_run_server_announces_itself_and_cleans_up_on_sigterm(flags, capsys):
    """run_server on this (main) thread; a helper finds it through discovery, then sends SIGTERM."""
    seen: dict[str, Any] = {}
    previous = signal.getsignal(signal.SIGTERM)
    returned = threading.Event()

    def stop_when_found() -> None:
        wait_for(lambda: returned.is_set() or find_server() is not None, 20.0)
        if returned.is_set():  # run_server failed on its own; nothing to stop
            return
        seen["info"] = info = find_server()
        seen["health"] = call(info, "GET", "/health")[1]
        handler = signal.getsignal(signal.SIGTERM)
        if callable(handler) and handler is not previous:
            os.kill(os.getpid(), signal.SIGTERM)
        else:  # run_server installed no handler: SIGTERM would kill pytest, so stop it another way
            seen["no_handler"] = True
            _thread.interrupt_main()

    helper = threading.Thread(target=stop_when_found, daemon=True)
    helper.start()
    try:
        assert run_server(port=0, flags=flags) == 0
    finally:
        returned.set()
        helper.join(TIMEOUT)
    assert "no_handler" not in seen
    info = seen["info"]
    assert info.pid == os.getpid() and seen["health"] == {"status": "ok", "model": "tiny", "loaded": True}
    err = capsys.readouterr().err
    assert err == f"dcode: serving tiny on http://127.0.0.1:{info.port} (infill: POST /infill)\n"
    assert not any(records_dir().glob("*.json"))
    assert signal.getsignal(signal.SIGTERM) is previous
