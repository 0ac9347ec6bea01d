"""A small OpenAI-compatible server for tests: /v1/models, /v1/completions (with `suffix`) and
/v1/chat/completions, with failures scripted per request (429, 500, slow, malformed JSON)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    """What the next request gets instead of an answer."""

    status: int = 200
    hang: bool = False  # never answer (until the fake server closes): a timeout must end the wait
    body: str | None = None  # raw body (e.g. malformed JSON) instead of the answer
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeOpenAI:
    fill: str = "    return a + b\n"  # the completion's text; the chat reply puts it in the hole
    model: str = "fake-coder"
    logprobs: bool = False  # send per-token logprobs with completions
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, dict]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)  # each request's Authorization header
    chat_reply: Callable[[str], str] | None = None  # user message -> reply; default: the file with the fill
    routes: dict[str, Callable[[dict], dict]] = field(default_factory=dict)  # more paths (a llama.cpp /props)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self, None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fake.handle(self, json.loads(self.rfile.read(length) or b"{}"))

        self.closed = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.closed.set()  # hung requests give up
        self.server.shutdown()
        self.server.server_close()

    def handle(self, handler: BaseHTTPRequestHandler, body: dict | None) -> None:
        self.requests.append((handler.path, body or {}))
        self.authorizations.append(handler.headers.get("Authorization"))
        fault = self.faults.pop(0) if self.faults else Fault()
        if fault.hang:
            self.closed.wait()
        status, payload = (fault.status, fault.body) if fault.body is not None or fault.status != 200 else \
            self.answer(handler.path, body)
        if payload is None:
            payload = json.dumps({"error": {"message": f"scripted HTTP {status}", "type": "test"}})
        data = payload.encode("utf-8")
        try:
            handler.send_response(status)
            for name, value in fault.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout test)

    def answer(self, path: str, body: dict | None) -> tuple[int, str]:
        if path in self.routes:
            return 200, json.dumps(self.routes[path](body or {}))
        if path == "/v1/models":
            return 200, json.dumps({"object": "list", "data": [{"id": self.model, "object": "model",
                                                                "max_model_len": 4096}]})
        if path == "/v1/completions" and body is not None:
            choice: dict = {"index": 0, "text": self.fill, "finish_reason": "stop"}
            if self.logprobs:
                tokens = [self.fill[i : i + 3] for i in range(0, len(self.fill), 3)]
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": [-0.01 if i else -2.0 for i in range(len(tokens))]}
            return 200, json.dumps({"id": "cmpl-1", "object": "text_completion", "model": self.model,
                                    "choices": [choice], "usage": {"completion_tokens": 5}})
        if path == "/v1/chat/completions" and body is not None:
            message = body["messages"][-1]["content"]
            reply = self.chat_reply(message) if self.chat_reply else default_chat_reply(message, self.fill)
            return 200, json.dumps({"id": "chat-1", "object": "chat.completion", "model": self.model,
                                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                                 "finish_reason": "stop"}]})
        return 404, json.dumps({"error": {"message": f"no route {path}"}})


def default_chat_reply(message: str, fill: str) -> str:
    """What a well-behaved instruct model answers: the file of the last code block, hole filled."""
    code = re.findall(r"```\n(.*?)\n```", message, re.DOTALL)[-1]
    return "Here it is:\n```python\n" + code.replace("<HOLE>", fill) + "\n```\n"
