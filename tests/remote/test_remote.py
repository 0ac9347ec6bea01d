"""dcode against a model server (`--endpoint`): the HTTP layer's retries and errors, protocol
detection, the adapters, and fill / refine / complete / the hook through a fake OpenAI server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcode.cli.app import app
from dcode.diffusion.engine import line_bounds
from dcode.diffusion.sampler import DecodeOptions
from dcode.errors import InputError, ModelError, NoEditError
from dcode.remote.http import HttpClient
from dcode.remote.model import ESTIMATED_COUNTS, connect
from dcode.remote.pieces import PieceTokenizer, carry
from dcode.remote.protocols import hole_in_reply
from dcode.settings import Settings, load_settings
from dcode.workflow import Request, context_for, resolve
from fake_openai import Fault, FakeOpenAI

FILE = 'def add(a, b):\n    """Return the sum."""\n    # dcode: fill\n\n\nprint(add(1, 2))\n'


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "m.py").write_text(FILE, encoding="utf-8")
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for var in [name for name in os.environ if name.startswith("DCODE_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(root)
    return root


def dcode(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def client(url: str, **kwargs) -> tuple[HttpClient, list[float]]:
    waits: list[float] = []
    return HttpClient(url, sleep=waits.append, **kwargs), waits


# --------------------------------------------------------------------------------------------
# HTTP: retries, timeouts, errors
# --------------------------------------------------------------------------------------------


def test_429_then_ok_is_retried_after_the_servers_retry_after(fake):
    fake.faults = [Fault(429, headers={"Retry-After": "2"}), Fault(503)]
    http, waits = client(fake.url)
    assert http.get("/v1/models").status == 200
    assert waits == [2.0, 1.0]  # the server's Retry-After, then our own backoff (doubled)


def test_persistent_5xx_is_a_model_error_after_the_retries(fake):
    fake.faults = [Fault(500)] * 4
    http, waits = client(fake.url, retries=3)
    with pytest.raises(ModelError, match=r"HTTP 500 after 4 tries: scripted HTTP 500"):
        http.get("/v1/models")
    assert waits == [0.5, 1.0, 2.0]


def test_a_slow_server_is_a_timeout_not_a_hang(fake):
    fake.faults = [Fault(hang=True)]
    http, waits = client(fake.url, timeout=0.2)
    with pytest.raises(ModelError, match=r"did not answer /v1/models within 0.2 s"):
        http.get("/v1/models")
    assert waits == []  # asking a slow model again does not make it faster


def test_a_server_that_is_down_is_one_model_error(unused_url):
    http, _ = client(unused_url)
    with pytest.raises(ModelError, match="cannot reach the model server"):
        http.get("/props")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unused_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_the_api_key_goes_as_a_bearer_token(fake):
    HttpClient(fake.url, api_key="s3cret").get("/v1/models")
    HttpClient(fake.url).get("/v1/models")
    assert fake.authorizations == ["Bearer s3cret", None]


# --------------------------------------------------------------------------------------------
# Detection and adapters
# --------------------------------------------------------------------------------------------


def settings(url: str, **kw) -> Settings:
    return Settings(endpoint=url, **kw)


def test_detection_openai_then_llamacpp_then_dcode(fake):
    model = connect(settings(fake.url))
    assert (model.protocol.name, model.name, model.config.max_seq_len, model.chat_template) == \
        ("openai", "fake-coder", 4096, False)
    fake.routes["/props"] = lambda body: {"default_generation_settings": {"n_ctx": 2048}, "model_path": "/m/q.gguf"}
    model = connect(settings(fake.url))
    assert (model.protocol.name, model.name, model.config.max_seq_len) == ("llamacpp", "q.gguf", 2048)
    fake.routes["/props"] = lambda body: {"dcode": {"model": "dream-coder", "chat_template": True, "max_seq_len": 999,
                                                    "refine": True, "confidences": True}}
    model = connect(settings(fake.url))
    assert (model.protocol.name, model.name, model.config.max_seq_len, model.chat_template) == \
        ("dcode", "dream-coder", 999, True)
    assert connect(settings(fake.url, protocol="openai-chat")).chat_template


def test_an_unknown_remote_model_is_refused_with_what_the_server_has(fake):
    with pytest.raises(InputError, match=r"does not serve 'big' \(it serves: fake-coder\)"):
        connect(settings(fake.url, remote_model="big"))


def test_a_server_that_is_no_model_server_is_a_model_error(fake):
    fake.routes["/v1/models"] = lambda body: {"hello": "world"}
    with pytest.raises(ModelError, match="neither /props"):
        connect(settings(fake.url))


def test_malformed_replies_are_model_errors(fake):
    model = connect(settings(fake.url))
    fake.faults = [Fault(body="{not json")]
    with pytest.raises(ModelError, match="malformed reply"):
        list(model.infill_stream("def f():\n", "\n", options=DecodeOptions()))
    fake.faults = [Fault(body=json.dumps({"choices": []}))]
    with pytest.raises(ModelError, match="malformed reply .no choices.0.text"):
        list(model.infill_stream("def f():\n", "\n", options=DecodeOptions()))


def test_openai_logprobs_become_confidences(fake):
    fake.logprobs = True
    *_, result = connect(settings(fake.url)).infill_stream("def add(a, b):\n", "\n", options=DecodeOptions())
    tok = PieceTokenizer()
    assert result.text == fake.fill and tok.decode(result.token_ids) == fake.fill
    assert result.confidences[0] < 0.2 < 0.9 < min(result.confidences[1:]) and result.notes == []


def test_dcode_protocol_sends_the_context_and_refines_the_draft_in_place(fake):
    def infill(body: dict) -> dict:
        return {"content": "x = 1\n", "dcode": {"token_ids": [5, 6, 7, 8], "spans": [[0, 1], [1, 3], [3, 5], [5, 6]],
                                                "confidences": [0.9, 0.3, 0.8, 1.0], "forward_passes": 3}}

    fake.routes.update({"/props": lambda body: {"dcode": {"model": "mini", "max_seq_len": 512}},
                        "/infill": infill, "/refine": infill})
    model = connect(settings(fake.url))
    *_, first = model.infill_stream("a", "b", path="p.py", context=[("q.py", "Q")], options=DecodeOptions(),
                                    instruction="do it")
    sent = fake.requests[-1][1]
    assert sent["input_extra"] == [{"filename": "q.py", "text": "Q"}] and sent["gather_context"] is False
    assert sent["filename"] == "p.py" and sent["instruction"] == "do it"
    assert first.confidences == [0.9, 0.3, 0.8, 1.0] and first.stats.forward_passes == 3
    assert [model.tokenizer.decode([i]) for i in first.token_ids] == ["x", " =", " 1", "\n"]
    *_, again = model.refine_stream("a", "b", first, remask=1, options=DecodeOptions())
    draft = fake.requests[-1][1]
    assert fake.requests[-1][0] == "/refine" and draft["remask"] == 1
    # The server's own pieces, as its answer gave them: it encodes them back (no /tokenize round trip).
    assert draft["draft"] == {"pieces": ["x", " =", " 1", "\n"], "confidences": [0.9, 0.3, 0.8, 1.0]}
    assert "/tokenize" not in [path for path, _ in fake.requests]
    assert again.regenerated is None


def test_chat_reply_is_cut_back_to_the_hole():
    prefix, suffix = "def f():\n", "\n\nprint(f())\n"
    assert hole_in_reply("ok\n```python\ndef f():\n    return 1\n\n\nprint(f())\n```", prefix, suffix) == \
        "    return 1\n"
    with pytest.raises(NoEditError, match="no code block"):
        hole_in_reply("I cannot", prefix, suffix)
    with pytest.raises(NoEditError, match="before the hole"):
        hole_in_reply("```\ndef g():\n    return 1\n\nprint(f())\n```", prefix, suffix)
    with pytest.raises(NoEditError, match="after the hole"):
        hole_in_reply("```\ndef f():\n    return 1\n```", prefix, suffix)


def test_piece_tokenizer_round_trips_and_carries_confidences():
    tok = PieceTokenizer()
    text = "def f(x):\n\treturn x  # é\x00\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and tok.char_spans(ids)[-1][1] == len(text)
    assert carry("ab cd", [(0, 2), (2, 5)], [0.5, 0.9]) == (["ab", " cd"], [0.5, 0.9])
    # Spans that do not tile the text (the server's text was cut): the local split, confidences carried.
    assert carry("ab cd", [(0, 1), (3, 5)], [0.5, 0.9]) == (["ab", " ", "cd"], [0.5, 1.0, 0.9])
    assert line_bounds("a\nb\nc", 2, 3) == (2, 5)
    with pytest.raises(InputError, match="outside the proposal"):
        line_bounds("a\n", 2, 2)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def test_the_api_key_is_refused_in_a_project_file_and_read_from_the_environment(repo):
    (repo / ".dcode.toml").write_text('api_key = "leak"\n')
    with pytest.raises(InputError, match="api_key does not belong in a project file"):
        load_settings(repo, {}, env={})
    (repo / ".dcode.toml").write_text('endpoint = "http://evil:1"\n')
    loaded, warnings = load_settings(repo, {}, env={"DCODE_API_KEY": "s3cret", "DCODE_TIMEOUT": "5"})
    assert loaded.endpoint is None and "ignoring 'endpoint'" in warnings[0]
    assert (loaded.api_key, loaded.timeout) == ("s3cret", 5.0) and "s3cret" not in repr(loaded)


# --------------------------------------------------------------------------------------------
# The CLI through the fake server
# --------------------------------------------------------------------------------------------


def test_fill_and_refine_through_an_openai_server(repo, fake):
    result = dcode("--endpoint", fake.url, "fill", "m.py", "--no-live")
    assert result.exit_code == 0, result.output
    assert "+    return a + b" in result.output and "no confidences from this server" in result.output
    assert fake.requests[-1][0] == "/v1/completions" and fake.requests[-1][1]["prompt"].endswith('sum."""\n')
    fake.fill = "    return b + a\n"
    result = dcode("--endpoint", fake.url, "refine", "--lines", "3-3", "--yes", "--no-live")
    assert result.exit_code == 0, result.output
    assert "regenerated lines 3-3 (the server has no in-place refinement)" in result.output
    assert "    return b + a\n" in (repo / "m.py").read_text()


def test_the_uncertain_tokens_hint_says_what_refine_does_on_the_server(repo, fake):
    fake.logprobs = True  # a confidence, and a low one for the first token
    result = dcode("--endpoint", fake.url, "fill", "m.py", "--no-live")
    assert result.exit_code == 0, result.output
    assert ("uncertain tokens on line(s) 3: `dcode refine --lines A-B` regenerates those lines "
            "(the server has no in-place refinement)") in result.output
    assert "re-masks" not in result.output


def test_context_budgets_with_the_endpoints_model(repo, fake):
    fake.routes["/v1/models"] = lambda body: {"data": [{"id": "fake-coder", "max_model_len": 600}]}
    result = dcode("--endpoint", fake.url, "context", "m.py", "--json")
    assert result.exit_code == 0, result.output
    settings = Settings()
    # The server's context length caps the budget, as it does for `fill` (not the local model's).
    assert json.loads(result.stdout)["budget_tokens"] == 600 - settings.max_tokens - 16
    assert "/v1/completions" not in [path for path, _ in fake.requests]  # asked what it is, nothing generated


def test_context_is_counted_in_the_servers_tokens_or_says_it_is_an_estimate(repo, fake):
    fake.routes["/props"] = lambda body: {"default_generation_settings": {"n_ctx": 2048}, "model_path": "q.gguf"}
    fake.routes["/tokenize"] = lambda body: {"tokens": list(range(len(body["content"]) // 2))}
    llama = connect(settings(fake.url))
    assert llama.count_tokens("abcdefgh") == 4 and llama.counts_exactly  # llama.cpp's /tokenize
    _, result = context_for(resolve(Request("m.py")), llama, Settings())
    assert ESTIMATED_COUNTS not in result.notes
    del fake.routes["/props"], fake.routes["/tokenize"]
    openai = connect(settings(fake.url))  # OpenAI's API has no tokenizer
    assert openai.count_tokens("ab cd") == len(PieceTokenizer().encode("ab cd")) and not openai.counts_exactly
    _, result = context_for(resolve(Request("m.py")), openai, Settings())
    assert ESTIMATED_COUNTS in result.notes


def test_fill_through_openai_chat_with_an_instruction(repo, fake, monkeypatch):
    monkeypatch.setenv("DCODE_PROTOCOL", "openai-chat")
    result = dcode("--endpoint", fake.url, "fill", "m.py", "-i", "add them", "--yes", "--no-live")
    assert result.exit_code == 0, result.output
    message = fake.requests[-1][1]["messages"][0]["content"]
    assert message.startswith("add them\n\nReply with the whole of m.py in one code block.")
    assert "    <HOLE>" not in message and "<HOLE>" in message and "# add them" not in message
    assert (repo / "m.py").read_text() == FILE.replace("    # dcode: fill\n", "    return a + b\n")


@pytest.mark.parametrize("fault, message", [
    (Fault(body="<html>oops"), "malformed reply"),
    (Fault(500), "HTTP 500 after"),
    (Fault(hang=True), "did not answer /v1/completions within 2 s"),
])
def test_server_failures_are_one_line_and_exit_3_with_no_fallback(repo, fake, monkeypatch, fault, message):
    # The timeout also bounds protocol detection, which must answer within it on a loaded machine:
    # 2 s is ample for a local server, and the completion that hangs never answers at all.
    monkeypatch.setenv("DCODE_TIMEOUT", "2")
    monkeypatch.setattr("dcode.remote.http.BACKOFF_S", 0.0)
    fake.faults = [Fault(), Fault()] + [fault] * 4  # detection (/props, /v1/models) answers; the completion fails
    result = dcode("--endpoint", fake.url, "fill", "m.py", "--no-live")
    assert result.exit_code == 3
    assert result.output.strip().splitlines()[-1].startswith("dcode: error:") and message in result.output


def test_a_server_that_is_down_exits_3(repo, unused_url):
    result = dcode("--endpoint", unused_url, "fill", "m.py", "--no-live")
    assert result.exit_code == 3
    assert result.output.strip() == f"dcode: error: cannot reach the model server at {unused_url}: " \
                                    "[Errno 111] Connection refused"


def test_429_then_ok_fills(repo, fake, monkeypatch):
    monkeypatch.setattr("dcode.remote.http.BACKOFF_S", 0.0)
    fake.faults = [Fault(), Fault(), Fault(429, headers={"Retry-After": "0"})]  # the completion, once
    result = dcode("--endpoint", fake.url, "fill", "m.py", "--no-live")
    assert result.exit_code == 0 and "+    return a + b" in result.output


def test_complete_forwards_to_the_endpoint(repo, fake, monkeypatch):
    monkeypatch.setenv("DCODE_ENDPOINT", fake.url)
    request = {"input_prefix": "def add(a, b):\n", "input_suffix": "\n", "n_predict": 16,
               "filename": str(repo / "m.py"), "stop": ["+"]}
    result = dcode("complete", input=json.dumps(request))
    assert result.exit_code == 0
    response = json.loads(result.output)
    assert response["content"] == "    return a " and response["model"] == "fake-coder"
    assert fake.requests[-1][1]["max_tokens"] == 16
    fake.close()
    result = dcode("complete", input=json.dumps(request))
    assert result.exit_code == 3 and json.loads(result.output)["error"]["code"] == "model_unavailable"


# --------------------------------------------------------------------------------------------
# The hook
# --------------------------------------------------------------------------------------------


def stage(repo: Path) -> None:
    subprocess.run(["git", "add", "m.py"], cwd=repo, check=True)


def test_the_hook_fills_through_the_endpoint(repo, fake):
    stage(repo)
    result = dcode("--endpoint", fake.url, "hook", "run")
    assert result.exit_code == 1, result.output  # it changed the file: the commit stops for review
    assert (repo / "m.py").read_text() == FILE.replace("    # dcode: fill\n", "    return a + b\n")
    assert fake.requests[-1][0] == "/v1/completions"


def test_the_hook_with_the_endpoint_down_never_loads_a_local_model(repo, unused_url):
    stage(repo)
    result = dcode("--endpoint", unused_url, "hook", "run")
    assert result.exit_code == 0 and "warning: skipped: cannot load the model (cannot reach" in result.output
    result = dcode("--endpoint", unused_url, "hook", "run", "--strict")
    assert result.exit_code == 3 and (repo / "m.py").read_text() == FILE



def test_info_describes_the_server_and_ask_is_refused(repo, fake):
    result = dcode("--endpoint", fake.url, "info", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {"model": "fake-coder", "endpoint": fake.url, "protocol": "openai",
                                         "context_tokens": 4096, "confidences": False,
                                         "refine": "regenerates the chosen lines"}
    result = dcode("--endpoint", fake.url, "ask", "hello")
    assert result.exit_code == 2 and "`dcode ask` runs a local model" in result.output


def test_the_shell_fills_and_refines_through_the_endpoint(repo, fake):
    import io

    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from rich.console import Console

    from dcode.shell import Shell

    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text("info\r" "fill m.py\rfa" "exit\r")  # fill -> refine (f) -> accept (a)
        Shell({"endpoint": fake.url}, Console(file=out, width=300), input=pipe, output=DummyOutput()).loop()
    log = out.getvalue()
    assert "model fake-coder, endpoint" in log and "refine regenerates the chosen lines" in log
    assert "regenerated lines 3-3 (the server has no in-place refinement)" in log and "applied to m.py" in log
    assert (repo / "m.py").read_text() == FILE.replace("    # dcode: fill\n", "    return a + b\n")


def test_a_server_that_refuses_suffix_points_at_openai_chat(repo, fake):
    fake.faults = [Fault(), Fault(), Fault(400, body=json.dumps({"error": {"message": "suffix is not currently supported"}}))]
    result = dcode("--endpoint", fake.url, "fill", "m.py", "--no-live")
    assert result.exit_code == 2
    assert "suffix is not currently supported (this server cannot fill a hole through completions: set protocol" \
        in result.output


def test_with_an_endpoint_model_names_the_servers_model(repo, fake):
    fake.routes["/v1/models"] = lambda body: {"data": [{"id": "small"}, {"id": "big"}]}
    result = dcode("--endpoint", fake.url, "--model", "big", "fill", "m.py", "--no-live")
    assert result.exit_code == 0 and fake.requests[-1][1]["model"] == "big"
    result = dcode("--endpoint", fake.url, "complete", "--model", "huge", input='{"input_prefix": "x"}')
    assert result.exit_code == 2 and "does not serve 'huge' (it serves: small, big)" in result.output


def test_llamacpp_infill_with_and_without_token_probabilities(fake):
    probs = [{"token": "x", "logprob": -0.1}, {"token": " = 1", "logprob": -1.5}]
    fake.routes.update({"/props": lambda body: {"default_generation_settings": {"n_ctx": 2048}},
                        "/infill": lambda body: {"content": "x = 1", "completion_probabilities": probs}})
    model = connect(settings(fake.url))
    *_, result = model.infill_stream("a", "b", context=[("q.py", "Q")], options=DecodeOptions())
    assert fake.requests[-1][1]["input_extra"] == [{"filename": "q.py", "text": "Q"}]
    assert [round(c, 2) for c in result.confidences] == [0.9, 0.22] and result.notes == []
    probs[1]["token"] = " = 2"  # not the content's tokens: no confidences rather than wrong ones
    *_, result = model.infill_stream("a", "b", options=DecodeOptions())
    assert result.notes == ["no confidences from this server: no token is marked uncertain"]


def test_a_dcode_reply_without_its_dcode_object_is_malformed(fake):
    fake.routes.update({"/props": lambda body: {"dcode": {"model": "m"}}, "/infill": lambda body: {"content": "x"}})
    with pytest.raises(ModelError, match="no dcode object"):
        list(connect(settings(fake.url)).infill_stream("a", "b", options=DecodeOptions()))
