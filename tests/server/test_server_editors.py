"""`dcode serve` against what real clients send and parse: llama.vim's and llama.vscode's request
bodies (tests/data/editors), the `openai` client, Server-Sent Events, /refine and /props, the
Origin check, several servers side by side, the thin `dcode complete` and the threads setting.

One server for the whole module (a tiny random model on CPU, port 0, a private runtime dir).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch

from dcode.complete.completer import Completer
from dcode.complete.request import parse_draft
from dcode.complete.response import committed_text, exit_code
from dcode.diffusion.engine import Prompt
from dcode.diffusion.sampler import DecodeStats, HoleState
from dcode.errors import InputError
from dcode.model.checkpoint import save_checkpoint
from dcode.model.loader import build_model
from dcode.model.threads import threads_for
from dcode.server import DcodeServer
from dcode.server.sse import SentText, StreamDiverged
from dcode.settings import load_settings
from tests.conftest import DATA, tiny_config

TIMEOUT = 20.0
EDITORS = DATA / "editors"
REQUEST = {"input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 24, "initial_tokens": 24}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        run = tmp_path_factory.mktemp("run")
        patch.setenv("XDG_RUNTIME_DIR", str(run))
        patch.setenv("XDG_CONFIG_HOME", str(run / "config"))
        for name in list(os.environ):
            if name.startswith("DCODE_"):
                patch.delenv(name)
        before = torch.get_num_threads()
        yield run
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(env, tmp_path_factory, tiny_tokenizer) -> Path:
    model = build_model(tiny_config(tiny_tokenizer), tiny_tokenizer, device="cpu", seed=0)
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_checkpoint(path, model.net.state_dict(), model.config, dtype=torch.float32)
    tiny_tokenizer.save(path / "tokenizer.json")
    return path


@pytest.fixture(scope="module")
def flags(model_dir) -> dict:
    return {"model": str(model_dir), "device": "cpu", "threads": 1}


@pytest.fixture(scope="module")
def server(flags) -> Iterator[DcodeServer]:
    server = DcodeServer(flags, "127.0.0.1", 0, allow_origins=("http://allowed.example",))
    thread = server.start_background()
    server.load_model()
    yield server
    server.close()
    thread.join(TIMEOUT)


def post(server: DcodeServer, path: str, body: Any, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("POST" if body is not None else "GET", path,
                     body=None if body is None else json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def stream(server: DcodeServer, path: str, body: dict) -> list[Any]:
    """The `data:` payloads of a Server-Sent Events answer, parsed (`[DONE]` kept as a string)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
        text = response.read().decode()
    finally:
        conn.close()
    events = [block.removeprefix("data: ") for block in text.split("\n\n") if block]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def editor_body(name: str) -> dict:
    return json.loads((EDITORS / name).read_text())


def assert_dcode_fields(answer: dict, vocab: int) -> None:
    dcode = answer["dcode"]
    ids, spans, conf = dcode["token_ids"], dcode["spans"], dcode["confidences"]
    assert len(ids) == len(spans) == len(conf) == answer["tokens_predicted"]
    assert all(0 <= i < vocab for i in ids) and all(0.0 <= c <= 1.0 for c in conf)
    assert all(0 <= s <= e <= len(answer["content"]) for s, e in spans)
    if "\ufffd" not in answer["content"]:  # char_spans skips bytes that decode() shows as U+FFFD
        assert "".join(answer["content"][s:e] for s, e in spans) == answer["content"]
    assert dcode["forward_passes"] == answer["timings"]["forward_passes"] >= 1
    assert dcode["chat_template"] is False


# -- llama.cpp parity with the plugins' own request bodies ----------------------------------------

def test_llama_vscode_body_gets_the_fields_it_reads(server, tiny_tokenizer):
    status, answer = post(server, "/infill", editor_body("llama_vscode_fim.json"))
    assert status == 200, answer
    assert answer["generation_settings"]["n_ctx"] == server.completer.model.config.max_seq_len
    assert isinstance(answer["tokens_cached"], int) and isinstance(answer["truncated"], bool)
    timings = answer["timings"]
    for key in ("prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms", "predicted_per_second"):
        assert isinstance(timings[key], (int, float)), key
    assert timings["prompt_n"] > 0 and timings["predicted_n"] == answer["tokens_predicted"]
    assert_dcode_fields(answer, tiny_tokenizer.vocab_size)


def test_llama_vim_body_gets_its_flattened_response_fields(server):
    body = editor_body("llama_vim_fim.json")
    status, answer = post(server, "/infill", body)
    assert status == 200 and set(answer) == set(body["response_fields"])
    assert isinstance(answer["timings/prompt_n"], int) and isinstance(answer["content"], str)


@pytest.mark.parametrize("name", ["llama_vim_ring.json", "llama_vscode_prepare.json"])
def test_the_plugins_context_updates_generate_nothing(server, name):
    calls = server.model_calls
    status, answer = post(server, "/infill", editor_body(name))
    assert status == 200 and answer.get("content", "") == "" and server.model_calls == calls + 1


def test_stop_n_predict_minus_one_and_completion(server):
    status, answer = post(server, "/infill", {**REQUEST, "stop": ["\n", "return"]})
    assert status == 200 and "\n" not in answer["content"] and "return" not in answer["content"]
    assert answer["generation_settings"]["stop"] == ["\n", "return"]
    status, answer = post(server, "/infill", {**REQUEST, "n_predict": -1})
    assert status == 200 and answer["generation_settings"]["n_predict"] == server.completer.settings.max_tokens
    status, answer = post(server, "/completion", {"prompt": "def add(a, b):\n", "n_predict": 8})
    assert status == 200 and isinstance(answer["content"], str) and "dcode" in answer


# -- streaming -----------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"stop": ["\n"]}, {"n_predict": 48, "initial_tokens": 48, "seed": 3}])
def test_streamed_chunks_concatenate_to_the_answer(server, extra):
    body = {**REQUEST, **extra}
    _, whole = post(server, "/infill", body)
    events = stream(server, "/infill", {**body, "stream": True})
    *partial, last = events
    assert all(e["stop"] is False and e["content"] for e in partial)
    assert last["stop"] is True and last["timings"]["forward_passes"] >= 1 and "dcode" in last
    assert "".join(e["content"] for e in events) == whole["content"]
    assert last["dcode"]["token_ids"] == whole["dcode"]["token_ids"]


def test_committed_text_never_retracts(model_dir, flags, tiny_tokenizer):
    """Replay a final hole pass by pass, committing slots in a scattered order: every committed
    text is a prefix of the final content, with healing ends and stop sequences."""
    tok = tiny_tokenizer
    final_ids = tok.encode("x = compute(a, b)\nreturn x + 1\n")
    mask = tok.mask_id
    order = [3, 0, 7, 1, 2, 10, 4, 5, 6, 9, 8] + list(range(11, len(final_ids)))
    for lead, trail, stops in [("", "", []), ("x", "", []), ("", "\n", ["\nret"]), ("", "", ["b)"])]:
        prompt = Prompt([], [], lead, trail)
        text = tok.decode(final_ids)
        final = text[len(lead):len(text) - len(trail)] if text.startswith(lead) and text.endswith(trail) else text
        final = final.split(stops[0])[0] if stops else final
        sent = SentText()
        hole = [mask] * len(final_ids)
        for slot in order:
            hole[slot] = final_ids[slot]
            state = HoleState(list(hole), [0.5] * len(hole), mask, DecodeStats())
            sent.extend(committed_text(tok, state, prompt, stops))
            assert final.startswith(sent.sent)
        assert sent.sent + sent.rest(final) == final
    with pytest.raises(StreamDiverged):
        diverged = SentText()
        diverged.extend("abc")
        diverged.rest("abd")


# -- OpenAI, with the real client ----------------------------------------------------------------

@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT)


def test_openai_client_completions_and_streaming(client):
    kwargs = {"model": "tiny", "prompt": "def add(a, b):\n", "suffix": "\n", "max_tokens": 16, "temperature": 0}
    whole = client.completions.create(**kwargs)
    assert whole.object == "text_completion" and len(whole.choices) == 1
    chunks = list(client.completions.create(**kwargs, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_openai_client_n_and_a_list_of_prompts(client):
    answer = client.completions.create(model="tiny", prompt=["def f(x):\n", "class A:\n"], n=2, max_tokens=8)
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert answer.usage.prompt_tokens > 0 and answer.usage.total_tokens >= answer.usage.prompt_tokens
    streamed = list(client.completions.create(model="tiny", prompt=["def f(x):\n", "class A:\n"], n=2,
                                              max_tokens=8, stream=True))
    texts = {i: "".join(c.choices[0].text for c in streamed if c.choices[0].index == i) for i in range(4)}
    assert texts == {c.index: c.text for c in answer.choices}


def test_openai_client_models(client):
    (model,) = client.models.list().data
    assert model.id == "tiny" and isinstance(model.created, int)
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


# -- /props and /refine (the remote-model contract) -----------------------------------------------

def test_props(server):
    status, props = post(server, "/props", None)
    assert status == 200 and props["total_slots"] == 1
    assert props["default_generation_settings"]["n_ctx"] == server.completer.model.config.max_seq_len
    assert props["dcode"] == {"model": "tiny", "chat_template": False, "refine": True, "confidences": True,
                              "max_seq_len": server.completer.model.config.max_seq_len}


def test_refine_revises_a_draft(server, tiny_tokenizer):
    ids = tiny_tokenizer.encode("a = 1\nb = 2\n")
    conf = [0.9] * len(ids)
    conf[2] = 0.1
    body = {"input_prefix": "def f():\n", "input_suffix": "\n",
            "draft": {"token_ids": ids, "confidences": conf}}
    status, answer = post(server, "/refine", {**body, "remask": 2})
    assert status == 200, answer
    assert_dcode_fields(answer, tiny_tokenizer.vocab_size)
    assert answer["tokens_predicted"] <= len(ids)  # remask keeps the slots
    status, answer = post(server, "/refine", {**body, "lines": [2, 2]})
    assert status == 200 and answer["content"].startswith("a = 1\n"), answer  # line 1 is kept
    for bad, words in [({"remask": 1, "lines": [1, 1]}, "exactly one"), ({}, "exactly one"),
                       ({"remask": 1, "draft": {"token_ids": [10**9], "confidences": [1.0]}}, "below"),
                       ({"remask": 1, "draft": {"token_ids": ids, "confidences": conf[:-1]}}, "confidences"),
                       ({"lines": [5, 6]}, "outside")]:
        status, answer = post(server, "/refine", {**body, **bad})
        assert status == 400 and words in answer["error"]["message"], answer


def test_refine_remasks_the_given_positions(server, tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok.encode("a = 1\nb = 2\n")
    body = {"input_prefix": "def f():\n", "input_suffix": "\n",
            "draft": {"token_ids": ids, "confidences": [0.9] * len(ids)}}
    status, answer = post(server, "/refine", {**body, "positions": [0]})
    assert status == 200, answer
    assert answer["content"].endswith(tok.decode(ids[1:])), answer  # every other token is kept
    marked = parse_draft(body["draft"], tok.encode, tok.vocab_size, positions=[0, 2])[1]
    assert [n for n, c in enumerate(marked) if c < 0] == [0, 2]
    for bad, words in [({"positions": [len(ids)]}, "draft has"), ({"positions": [0], "remask": 1}, "exactly one"),
                       ({"positions": []}, "non-empty"), ({"positions": [-1]}, "indices")]:
        status, answer = post(server, "/refine", {**body, **bad})
        assert status == 400 and words in answer["error"]["message"], answer


def test_a_draft_sent_as_pieces_is_encoded_piece_by_piece(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok.encode("a = 1\nb = 2\n")
    conf = [0.1 * (n + 1) for n in range(len(ids))]
    pieces = {"pieces": [tok.decode([i]) for i in ids], "confidences": conf}
    assert parse_draft(pieces, tok.encode, tok.vocab_size) == (ids, conf)  # each piece is one token: exact
    head, tail = tok.encode("a"), tok.encode("b = 2\n")
    assert len(tail) > 1  # a piece the server splits: each of its tokens takes the piece's confidence
    assert parse_draft({"pieces": ["a", "b = 2\n"], "confidences": [0.3, 0.7]}, tok.encode, tok.vocab_size) == \
        (head + tail, [0.3] * len(head) + [0.7] * len(tail))
    for bad, words in [({"pieces": ["a", 1], "confidences": [1.0, 1.0]}, "list of strings"),
                       ({"pieces": ["a"], "confidences": []}, "1 pieces but 0 confidences"),
                       ({"pieces": [""], "confidences": [1.0]}, "non-empty")]:
        with pytest.raises(InputError, match=words):
            parse_draft(bad, tok.encode, tok.vocab_size)


def test_refine_takes_the_draft_as_pieces(server, tiny_tokenizer):
    ids = tiny_tokenizer.encode("a = 1\nb = 2\n")
    draft = {"pieces": [tiny_tokenizer.decode([i]) for i in ids], "confidences": [0.9] * len(ids)}
    status, answer = post(server, "/refine", {"input_prefix": "def f():\n", "input_suffix": "\n", "draft": draft,
                                             "lines": [2, 2]})
    assert status == 200 and answer["content"].startswith("a = 1\n"), answer


def test_instruction_needs_a_chat_template_and_gather_context_is_optional(server):
    status, answer = post(server, "/infill", {**REQUEST, "instruction": "add them"})
    assert status == 400 and "chat template" in answer["error"]["message"]
    status, answer = post(server, "/infill", {**REQUEST, "filename": "no/such/dir/a.py", "gather_context": False,
                                              "input_extra": [{"filename": "b.py", "text": "B = 1\n"}]})
    assert status == 200 and "dcode" in answer
    assert post(server, "/infill", {**REQUEST, "gather_context": "no"})[0] == 400


# -- access --------------------------------------------------------------------------------------

def test_browser_cross_origin_requests_are_refused(server):
    status, answer = post(server, "/infill", REQUEST, {"Origin": "https://evil.example"})
    assert status == 403 and answer["error"]["code"] == "forbidden"
    assert post(server, "/health", None, {"Origin": "https://evil.example"})[0] == 403
    assert post(server, "/infill", REQUEST, {"Origin": "http://allowed.example"})[0] == 200


def test_serve_rejects_a_bad_port_in_one_line(env):
    out = subprocess.run([sys.executable, "-m", "dcode", "serve", "--port", "99999"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "XDG_RUNTIME_DIR": str(env)})
    assert out.returncode == 2 and out.stderr == "dcode: error: --port must be 1-65535\n"


# -- the thin client -----------------------------------------------------------------------------

def test_dcode_complete_through_a_server_imports_no_torch(server, env, model_dir):
    server.write_discovery()
    try:
        script = ("import io, json, sys\n"
                  "from dcode.cli import main\n"
                  f"sys.argv = ['dcode', 'complete', '--model', {str(model_dir)!r}]\n"
                  f"sys.stdin = io.StringIO({json.dumps(json.dumps(REQUEST))})\n"
                  "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
                  "heavy = sorted(m for m in ('torch', 'numpy', 'starlette', 'uvicorn', 'dcode.model.loader')"
                  " if m in sys.modules)\n"
                  "print(json.dumps({'code': code, 'heavy': heavy}), file=sys.stderr)\n")
        calls = server.model_calls
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "XDG_RUNTIME_DIR": str(env)})
    finally:
        server.remove_discovery()
    report = json.loads(out.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []} and server.model_calls == calls + 1
    assert isinstance(json.loads(out.stdout)["content"], str)



@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   MemoryError()])
def test_running_out_of_memory_is_model_unavailable(flags, monkeypatch, error):
    """As the CLI says it: the model does not fit (exit 3), not an internal error (exit 2)."""
    def infill_stream(*args, **kwargs):
        raise error

    completer = Completer(flags)
    completer.ensure_model()
    monkeypatch.setattr("dcode.diffusion.engine.infill_stream", infill_stream)
    answer = completer.answer(REQUEST)
    assert answer["error"]["code"] == "model_unavailable" and exit_code(answer) == 3
    message = answer["error"]["message"]
    assert "\n" not in message
    assert message.startswith("the GPU ran out of memory (" if isinstance(error, torch.OutOfMemoryError)
                              else "out of memory (")


def test_dcode_complete_with_an_endpoint_imports_no_torch():
    code = "import sys, dcode.complete.remote; print(sorted(m for m in ('torch', 'dcode.remote.model') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


# -- threads -------------------------------------------------------------------------------------

def test_threads_setting(model_dir, env, monkeypatch):
    assert load_settings(None, {}, {"DCODE_THREADS": "3"})[0].threads == 3
    assert 1 <= threads_for(None) <= 4 and threads_for(2) == 2
    completer = Completer({"model": str(model_dir), "device": "cpu", "threads": 2})
    completer.ensure_model()
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)


def test_the_fast_path_takes_only_plain_options():
    from dcode.server.client import _simple_flags

    assert _simple_flags(["--jsonl", "--model=x", "--device", "cpu"]) == ({"model": "x", "device": "cpu"}, True)
    assert _simple_flags([]) == ({}, False)
    for args in (["--no-server"], ["--help"], ["--model"], ["--endpoint", "http://x"]):
        assert _simple_flags(args) is None  # left to the CLI, which knows them (or says what is wrong)


def test_a_stream_whose_client_leaves_stops_early(server):
    """Editors drop stale completions as you type: the model must not finish them.

    The model's first pass is held until the client has hung up and the server has told the model
    to stop, so the outcome does not depend on how many passes run while the event loop notices
    the disconnect. Each wait is on an event, never on a counter."""
    import socket
    import threading
    import time

    answer = server.completer.answer
    told: list[bool] = []  # after each pass, what the server told the model: go on?
    answers: list[dict | None] = []
    streaming, client_left, finished = threading.Event(), threading.Event(), threading.Event()

    def held_first_pass(on_text):
        def watched(text: str) -> bool:
            streaming.set()
            client_left.wait(TIMEOUT)
            deadline = time.monotonic() + TIMEOUT
            go_on = on_text(text)
            while go_on and not told and time.monotonic() < deadline:  # until the server notices
                time.sleep(0.01)
                go_on = on_text(text)
            told.append(go_on)
            return go_on
        return watched

    def spy(data, on_text=None):
        try:
            answers.append(answer(data, held_first_pass(on_text) if on_text else None))
        finally:
            finished.set()

    server.completer.answer = spy
    try:
        body = json.dumps({**REQUEST, "n_predict": 96, "initial_tokens": 96, "tokens_per_step": 1, "stream": True})
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"POST /infill HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode()))
            assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200")  # the stream has begun
            assert streaming.wait(TIMEOUT), "the model never started its first pass"
        client_left.set()
        assert finished.wait(TIMEOUT), "the model did not stop"
    finally:
        del server.completer.answer
    # One pass (tokens_per_step 1: finishing would have taken about 96), then the answer was dropped.
    assert told == [False]
    assert answers == [None]


def test_a_causal_context_model_reuses_a_shared_prefix_across_requests(env, tmp_path, tiny_tokenizer):
    """llama.cpp's `cache_prompt`: a request whose context starts like the previous one's takes
    those keys/values from the cache (exact only when the context is read causally)."""
    from dcode.complete.completer import Completer

    answers = {}
    for causal in (True, False):
        model = build_model(tiny_config(tiny_tokenizer, causal_context=causal), tiny_tokenizer, device="cpu", seed=0)
        path = tmp_path / f"causal-{causal}"
        save_checkpoint(path, model.net.state_dict(), model.config, dtype=torch.float32)
        tiny_tokenizer.save(path / "tokenizer.json")
        completer = Completer({"model": str(path), "device": "cpu", "threads": 1})
        prefix = "import os\n\ndef add(a, b):\n    total = a + b\n    return "
        first = completer.answer({**REQUEST, "input_prefix": prefix})
        second = completer.answer({**REQUEST, "input_prefix": prefix + "total"})
        answers[causal] = (first["tokens_cached"], second["tokens_cached"])
    assert answers[True][0] == 0 and answers[True][1] > 10
    assert answers[False] == (0, 0)
