"""`dcode serve`: keep the model warm behind a small local HTTP server.

Endpoints (JSON in, JSON out):
  POST /infill           llama.cpp-compatible infill (the `dcode complete` contract), so llama.vim and
                         llama.vscode work unchanged; also understands their `prompt` and
                         `t_max_predict_ms` fields and `n_predict: 0` warm-up requests.
  POST /v1/completions   OpenAI-style text completion: `prompt` + `suffix` -> `choices[0].text`.
  GET  /health           {"status": "ok", "model": name, "loaded": bool}; never needs the token.
  GET  /v1/models        the one model, for OpenAI clients that list models first.

One model call runs at a time, on one long-lived thread, first come first served; a request whose
client hung up while queued (editors cancel stale completions as you type) is dropped unrun.

Discovery: while serving, `$XDG_RUNTIME_DIR/dcode/server.json` says where the server is, so
`dcode complete` (`complete_stdio_with_server`) can use it instead of loading the model itself.
"""

from __future__ import annotations

import gc
import hmac
import http.client
import ipaddress
import json
import os
import select
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from dcode.complete import MAX_REQUEST_BYTES, Completer, error_response, serve_stdio
from dcode.errors import DcodeError, InputError, ModelError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8012  # llama.vim's and llama.vscode's default endpoint port: no editor config needed
DEFAULT_MAX_QUEUE = 64
DEFAULT_CLIENT_TIMEOUT_S = 120.0  # a queued request can wait behind others; generous but bounded
HEALTH_TIMEOUT_S = 0.5
DRAIN_LIMIT = 16 * 2**20  # refused bodies up to this size are read and dropped, not left in the socket
DISCOVERY_NAME = "server.json"

# error.code -> HTTP status.
STATUS_FOR_CODE = {
    "invalid_json": 400,
    "invalid_request": 400,
    "model_unavailable": 503,
    "server_busy": 503,
    "internal_error": 500,
}


# --------------------------------------------------------------------------------------------
# Binding rules
# --------------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals; other names count as non-loopback (we do not
    trust a resolver to decide whether a port is exposed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_bind(host: str | None, explicit: bool) -> str:
    """The address to listen on: loopback unless a non-loopback host was typed as `--host`."""
    if not host:
        return DEFAULT_HOST
    host = host.strip("[]")
    if is_loopback(host):
        return host
    if not explicit:
        raise InputError(f"refusing to listen on non-loopback address {host!r}; pass --host {host} explicitly")
    sys.stderr.write(
        f"dcode: warning: listening on {host}: anyone who can reach this port can run the model "
        "and have it read files named in requests; set a token\n"
    )
    return host


def connect_host(bind_host: str) -> str:
    """Where a local client should connect to reach a server bound to `bind_host`."""
    if bind_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind_host == "::":
        return "::1"
    return bind_host


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --------------------------------------------------------------------------------------------
# Request translation (llama.cpp / OpenAI fields -> the `dcode complete` contract)
# --------------------------------------------------------------------------------------------

def normalize_infill(data: Any) -> Any:
    """Fold llama.cpp-only fields into the contract's.

    llama.vim and llama.vscode send the text left of the cursor on the current line as `prompt`
    (llama.cpp appends it after the prefix); dropping it would complete the wrong position.
    `t_max_predict_ms` is their time budget, which is our `deadline_ms`.
    """
    if not isinstance(data, dict):
        return data
    data = dict(data)
    prompt = data.pop("prompt", None)
    if isinstance(prompt, str) and prompt and isinstance(data.get("input_prefix", ""), str):
        data["input_prefix"] = data.get("input_prefix", "") + prompt
    budget = data.get("t_max_predict_ms")
    is_number = isinstance(budget, (int, float)) and not isinstance(budget, bool)
    if data.get("deadline_ms") is None and is_number and budget > 0:
        data["deadline_ms"] = budget
    return data


def is_warmup(data: Any) -> bool:
    """llama.vim/llama.vscode send `n_predict: 0` to pre-load context; nothing to generate."""
    return isinstance(data, dict) and data.get("n_predict") == 0 and not isinstance(data.get("n_predict"), bool)


def openai_to_infill(data: Any) -> dict:
    """Map an OpenAI /v1/completions body to an infill request; InputError on wrong types."""
    if not isinstance(data, dict):
        raise InputError("the request must be a JSON object")
    prompt = data.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]  # OpenAI accepts a batch; one prompt is all we serve
    if not isinstance(prompt, str):
        raise InputError("prompt must be a string")
    suffix = data.get("suffix") or ""
    if not isinstance(suffix, str):
        raise InputError("suffix must be a string")
    n = data.get("n", 1)
    if n not in (None, 1) or isinstance(n, bool):
        raise InputError("only n=1 is supported")
    request: dict[str, Any] = {"input_prefix": prompt, "input_suffix": suffix}
    max_tokens = data.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InputError("max_tokens must be a positive integer")
        request["n_predict"] = max_tokens
    for field in ("temperature", "seed", "top_p"):
        if data.get(field) is not None:
            request[field] = data[field]  # types are checked by parse_request
    return request


def stop_sequences(data: dict) -> list[str]:
    stop = data.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise InputError("stop must be a string or a list of strings")


def apply_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop sequence; True when one was found."""
    cuts = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def openai_response(answer: dict, model: str | None, prompt_tokens: int, max_tokens: int, stops: list[str]) -> dict:
    text, stopped = apply_stop(answer.get("content", ""), stops)
    completion_tokens = int(answer.get("tokens_predicted", 0))
    finish = "length" if completion_tokens >= max_tokens and not stopped else "stop"
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"text": text, "index": 0, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_model_executor: ThreadPoolExecutor | None = None
_model_executor_guard = threading.Lock()


def model_thread() -> ThreadPoolExecutor:
    """The one thread that runs every model call in this process, in submission order.

    Torch's OpenMP pool is per calling thread: running the model from each short-lived HTTP handler
    thread spawns a new pool per request, which on a loaded machine slows calls by seconds and can
    hang outright. One long-lived thread also gives first-come-first-served queueing for free.
    """
    global _model_executor
    with _model_executor_guard:
        if _model_executor is None:
            _model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcode-model")
        return _model_executor


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not keep the process alive on shutdown
    request_queue_size = 128  # listen backlog; the default 5 drops connections in an editor's burst
    app: DcodeServer

    def __init__(self, address: tuple[str, int], app: DcodeServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall for seconds
        # on a machine without a resolver; we never use the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class HttpError(Exception):
    """A request we answer with `status` and a contract-shaped error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


class DcodeServer:
    """One `Completer` behind a ThreadingHTTPServer; binds in the constructor (port 0 = any)."""

    def __init__(
        self,
        flags: dict[str, Any],
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        token: str | None = None,
        idle_unload_s: float | None = None,
        max_body_bytes: int = MAX_REQUEST_BYTES,
        max_queue: int = DEFAULT_MAX_QUEUE,
        verbose: bool = False,
    ) -> None:
        self.completer = Completer(flags)
        self.token = token or None
        self.idle_unload_s = idle_unload_s if idle_unload_s and idle_unload_s > 0 else None
        self.max_body_bytes = max_body_bytes
        self.max_queue = max_queue
        self.verbose = verbose
        self.model_calls = 0  # requests that reached the model thread (warm-ups included)
        self.dropped = 0  # queued requests whose client left before their turn
        self.unloads = 0
        self._pending = 0  # model requests running or queued on this server
        self._pending_guard = threading.Lock()
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._discovery: Path | None = None
        self._watcher: threading.Thread | None = None
        self._serving = False
        try:
            self.httpd = _HTTPServer((host, port), self)
        except OSError as exc:
            raise InputError(f"cannot listen on {base_url(host, port)}: {exc.strerror or exc}") from None
        self.bind_host = host
        self.loopback_only = is_loopback(host)
        self.model_dir = _configured_model_dir(self.completer.settings.model)

    # -- address -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def host(self) -> str:
        return connect_host(self.bind_host)

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)

    @property
    def model_name(self) -> str | None:
        model = self.completer.model
        if model is not None:
            return model.name
        return Path(self.model_dir).name if self.model_dir else None

    # -- lifecycle -----------------------------------------------------------------------------
    def serve_forever(self) -> None:
        if self.idle_unload_s and self._watcher is None:
            self._watcher = threading.Thread(target=self._idle_loop, name="dcode-idle-unload", daemon=True)
            self._watcher.start()
        self._serving = True
        self.httpd.serve_forever(poll_interval=0.1)

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="dcode-server", daemon=True)
        self._serving = True  # so a shutdown() racing the thread's start still stops it
        thread.start()
        return thread

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and the idle watcher."""
        self._stop.set()
        if self._serving:  # httpd.shutdown() waits for a serve_forever that never started otherwise
            self.httpd.shutdown()
            self._serving = False

    def close(self) -> None:
        self._stop.set()
        self.httpd.server_close()
        self.remove_discovery()

    # -- idle unload ---------------------------------------------------------------------------
    def _idle_loop(self) -> None:
        assert self.idle_unload_s is not None
        poll = min(max(self.idle_unload_s / 4, 0.01), 1.0)
        while not self._stop.wait(poll):
            self.maybe_unload()

    def maybe_unload(self) -> bool:
        """Drop the model if it has been idle long enough and no request is running or queued."""
        if self.idle_unload_s is None or self.completer.model is None or self.pending or not self._idle():
            return False
        # On the model thread, so it cannot interleave with a request that slipped in meanwhile.
        return model_thread().submit(self._unload_if_idle).result()

    def _idle(self) -> bool:
        return self.idle_unload_s is not None and time.monotonic() - self._last_activity >= self.idle_unload_s

    def _unload_if_idle(self) -> bool:
        if self.completer.model is None or self.pending or not self._idle():
            return False
        self.completer.model = None
        self.unloads += 1
        _free_memory()
        if self.verbose:
            sys.stderr.write(f"dcode: unloaded the model after {self.idle_unload_s:g}s idle\n")
        return True

    @property
    def pending(self) -> int:
        with self._pending_guard:
            return self._pending

    # -- requests ------------------------------------------------------------------------------
    def health(self) -> dict:
        return {"status": "ok", "model": self.model_name, "loaded": self.completer.model is not None}

    def models(self) -> dict:
        name = self.model_name or "dcode"
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "dcode"}]}

    def load_model(self) -> None:
        """Load the model now, on the model thread (`dcode serve` starts warm and fails fast)."""
        model_thread().submit(self.completer.ensure_model).result()

    def run_model(self, call: Callable[[], dict], client_gone: Callable[[], bool]) -> dict | None:
        """Run `call` on the model thread after the requests before it. None if the client left
        while queued."""
        with self._pending_guard:
            if self._pending > self.max_queue:
                raise HttpError(503, "server_busy", f"more than {self.max_queue} requests are waiting; try again")
            self._pending += 1
        self._last_activity = time.monotonic()
        try:
            future = model_thread().submit(self._run_queued, call, client_gone)
        except RuntimeError:  # the executor is shut down: the interpreter is exiting
            self._done()
            raise HttpError(503, "server_busy", "the server is shutting down") from None
        try:
            return future.result()
        except CancelledError:
            raise HttpError(503, "server_busy", "the server is shutting down") from None

    def _run_queued(self, call: Callable[[], dict], client_gone: Callable[[], bool]) -> dict | None:
        try:
            if client_gone():
                self.dropped += 1
                return None
            self.model_calls += 1
            return call()
        finally:
            self._done()

    def _done(self) -> None:
        self._last_activity = time.monotonic()
        with self._pending_guard:
            self._pending -= 1

    def infill(self, data: Any) -> dict:
        """The /infill answer (the `dcode complete` contract); runs on the model thread."""
        data = normalize_infill(data)
        if is_warmup(data):
            # Warm-up: load the model (and report load errors) without generating anything.
            try:
                model = self.completer.ensure_model()
            except DcodeError as err:
                return error_response("model_unavailable", str(err), self.model_name)
            return {"content": "", "tokens_predicted": 0, "model": model.name}
        return self.completer.answer(data)

    def tokenize(self, data: Any) -> dict:
        """The /tokenize answer (llama.cpp's: `content` in, `tokens` out); runs on the model thread."""
        if not isinstance(data, dict) or not isinstance(data.get("content"), str):
            return error_response("invalid_request", "send {\"content\": \"text\"}", self.model_name)
        try:
            model = self.completer.ensure_model()
        except DcodeError as err:
            return error_response("model_unavailable", str(err), self.model_name)
        return {"tokens": model.tokenizer.encode(data["content"]), "model": model.name}

    def completion(self, data: dict, request: dict) -> dict:
        """The /v1/completions answer; runs on the model thread."""
        stops = stop_sequences(data)
        answer = self.completer.answer(request)
        if "error" in answer:
            return answer
        tokenizer = self.completer.model.tokenizer
        prompt_tokens = len(tokenizer.encode(request["input_prefix"])) + len(tokenizer.encode(request["input_suffix"]))
        max_tokens = request.get("n_predict", self.completer.settings.max_tokens)
        return openai_response(answer, answer.get("model"), prompt_tokens, max_tokens, stops)

    # -- discovery -----------------------------------------------------------------------------
    def discovery_record(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": self.host,
            "port": self.port,
            "token_required": self.token is not None,
            "model": self.model_dir,
        }

    def write_discovery(self, path: Path | None = None) -> Path:
        path = path or discovery_path(create=True)
        _write_private(path, json.dumps(self.discovery_record()) + "\n")
        self._discovery = path
        return path

    def remove_discovery(self) -> None:
        """Remove our discovery file, unless another server has since replaced it with its own."""
        path, self._discovery = self._discovery, None
        if path is None:
            return
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
            if current.get("pid") == os.getpid() and current.get("port") == self.port:
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass


def _configured_model_dir(model: str | None) -> str | None:
    """The absolute model directory the server will load, or None if it cannot be resolved."""
    from dcode.model.loader import resolve_model_dir

    try:
        return str(resolve_model_dir(model).resolve())
    except DcodeError:
        return None


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # freeing is best effort; never fail the watcher over it
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive for axios/curl; every response has Content-Length
    timeout = 30  # idle keep-alive sockets and slow senders are closed, not kept forever
    server_version = "dcode"

    ROUTES: dict[str, dict[str, str]] = {
        "/health": {"GET": "_health"},
        "/v1/models": {"GET": "_models"},
        "/infill": {"POST": "_infill"},
        "/v1/completions": {"POST": "_completions"},
        "/tokenize": {"POST": "_tokenize"},
    }
    PUBLIC = frozenset({"/health"})

    @property
    def app(self) -> DcodeServer:
        return self.server.app

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def _dispatch(self) -> None:
        self._body_read = False
        reply = self._respond()
        if reply is None:  # the client left while queued: nobody to answer
            self.close_connection = True
            return
        try:
            self._send(*reply)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _respond(self) -> tuple[int, dict, dict[str, str]] | None:
        """(status, body, extra headers) for this request; every failure becomes a JSON error."""
        try:
            result = self._route()
            return None if result is None else (result[0], result[1], {})
        except HttpError as err:
            return err.status, error_response(err.code, str(err), self.app.model_name), err.headers
        except Exception as err:  # never let one request take the server down
            traceback.print_exc(file=sys.stderr)
            return 500, error_response("internal_error", f"{type(err).__name__}: {err}", self.app.model_name), {}

    def _route(self) -> tuple[int, dict] | None:
        self._check_host()
        path = urlsplit(self.path).path.rstrip("/") or "/"
        methods = self.ROUTES.get(path)
        if methods is None:
            raise HttpError(404, "not_found",
                            f"no endpoint {path}; try POST /infill, POST /v1/completions or GET /health")
        if self.command not in methods:
            allowed = ", ".join(methods)
            raise HttpError(405, "method_not_allowed", f"{path} accepts {allowed}", {"Allow": allowed})
        if path not in self.PUBLIC:
            self._check_token()
        return getattr(self, methods[self.command])()

    # -- checks --------------------------------------------------------------------------------
    def _check_host(self) -> None:
        """On loopback, refuse foreign Host headers: a web page using DNS rebinding must not reach us."""
        if not self.app.loopback_only:
            return
        host = self.headers.get("Host")
        if host is None:
            return
        name = urlsplit(f"//{host}").hostname or ""
        if not is_loopback(name):
            raise HttpError(403, "forbidden", f"Host {host!r} is not a loopback address")

    def _check_token(self) -> None:
        expected = self.app.token
        if expected is None:
            return
        given = self.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), expected.encode()):
            raise HttpError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    def _read_json(self) -> Any:
        body = self._read_body()
        try:
            return json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(400, "invalid_json", "the request body is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise HttpError(400, "invalid_json", f"malformed JSON: {exc}") from None

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            raise HttpError(411, "invalid_request", "a Content-Length header (or a chunked body) is required")
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError
        except ValueError:
            raise HttpError(400, "invalid_request", f"bad Content-Length {raw_length!r}") from None
        if length > self.app.max_body_bytes:
            self._drain(length)
            raise self._too_large()
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            raise HttpError(400, "invalid_request", "the request body ended early")
        return body

    def _read_chunked(self) -> bytes:
        """Decode a Transfer-Encoding: chunked body (editors' HTTP clients send one when they stream
        a request). A body over the limit or a malformed chunk leaves the connection to be closed."""
        parts: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError
            except ValueError:
                raise HttpError(400, "invalid_request", "malformed chunked body") from None
            if size == 0:
                break
            total += size
            if total > self.app.max_body_bytes:
                raise self._too_large()
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise HttpError(400, "invalid_request", "the chunked body ended early or is malformed")
            parts.append(chunk)
        trailer = self.rfile.readline(8192)
        while trailer not in (b"\r\n", b"\n", b""):  # trailer fields: read and ignored
            trailer = self.rfile.readline(8192)
        self._body_read = True
        return b"".join(parts)

    def _too_large(self) -> HttpError:
        return HttpError(413, "invalid_request", f"the request body is over the {self.app.max_body_bytes}-byte limit")

    def _drain(self, length: int) -> None:
        """Read and drop a refused body, so the client (still sending) gets our 413 rather than a
        broken pipe; past DRAIN_LIMIT we stop reading and close the connection instead."""
        if length > DRAIN_LIMIT:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return
            length -= len(chunk)
        self._body_read = True

    def _client_gone(self) -> bool:
        """True when the client closed its socket (an editor cancelled a stale completion)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # -- endpoints -----------------------------------------------------------------------------
    def _health(self) -> tuple[int, dict]:
        return 200, self.app.health()

    def _models(self) -> tuple[int, dict]:
        return 200, self.app.models()

    def _infill(self) -> tuple[int, dict] | None:
        data = self._read_json()
        if isinstance(data, dict) and data.get("stream"):
            raise HttpError(400, "invalid_request", "stream is not supported; send stream: false")
        answer = self.app.run_model(lambda: self.app.infill(data), self._client_gone)
        return None if answer is None else (_status_of(answer), answer)

    def _tokenize(self) -> tuple[int, dict] | None:
        data = self._read_json()
        answer = self.app.run_model(lambda: self.app.tokenize(data), self._client_gone)
        return None if answer is None else (_status_of(answer), answer)

    def _completions(self) -> tuple[int, dict] | None:
        data = self._read_json()
        try:
            request = openai_to_infill(data)
            stop_sequences(data)  # reject a bad `stop` before queueing
        except InputError as err:
            raise HttpError(400, "invalid_request", str(err)) from None
        if data.get("stream"):
            raise HttpError(400, "invalid_request", "stream is not supported; send stream: false")
        answer = self.app.run_model(lambda: self.app.completion(data, request), self._client_gone)
        return None if answer is None else (_status_of(answer), answer)

    # -- output --------------------------------------------------------------------------------
    def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
        length = self.headers.get("Content-Length", "0").strip()
        has_body = length not in ("", "0") or "Transfer-Encoding" in self.headers
        if has_body and not self._body_read:
            # The body is still in the socket; reading on would misparse it as the next request.
            self.close_connection = True
        self._write_json(status, payload, headers)

    def _write_json(self, status: int, payload: dict, headers: dict[str, str]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Requests the base class rejects before routing (bad request line, unknown method, huge
        headers) get the same JSON error shape as ours instead of an HTML page."""
        self.close_connection = True
        reason = message or HTTPStatus(code).phrase
        try:
            self._write_json(code, error_response("invalid_request", reason, self.app.model_name), {})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base-class signature)
        if self.app.verbose:
            super().log_message(format, *args)


def _status_of(answer: dict) -> int:
    error = answer.get("error")
    return STATUS_FOR_CODE.get(error.get("code"), 200) if isinstance(error, dict) else 200


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerInfo:
    pid: int
    host: str
    port: int
    token_required: bool
    model: str | None  # absolute model directory the server loads

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)


def runtime_dir() -> Path:
    """`$XDG_RUNTIME_DIR/dcode`, else `$XDG_CACHE_HOME/dcode/run` (default ~/.cache/dcode/run)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "dcode"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "dcode" / "run"


def discovery_path(create: bool = False) -> Path:
    directory = runtime_dir()
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode does not apply to an existing directory; the file says where a model runs.
        os.chmod(directory, 0o700)
    return directory / DISCOVERY_NAME


def _write_private(path: Path, text: str) -> None:
    """Atomically write a 0600 file, so a reader never sees half a record."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".server-", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_discovery(path: Path | None = None) -> ServerInfo | None:
    path = path or discovery_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        info = ServerInfo(
            pid=record["pid"], host=record["host"], port=record["port"],
            token_required=bool(record.get("token_required", False)), model=record.get("model"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    valid = (
        isinstance(info.pid, int) and info.pid > 0 and isinstance(info.host, str)
        and isinstance(info.port, int) and 0 < info.port < 65536
        and (info.model is None or isinstance(info.model, str))
    )
    return info if valid else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would address our whole process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, just not ours to signal
    return True


def _request(info: ServerInfo, method: str, path: str, body: bytes | None, headers: dict[str, str],
             timeout: float) -> tuple[int, Any] | None:
    """(status, parsed JSON) or None when the server cannot be reached or answers non-JSON."""
    conn = http.client.HTTPConnection(info.host, info.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload.decode("utf-8"))
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def find_server(path: Path | None = None, timeout: float = HEALTH_TIMEOUT_S) -> ServerInfo | None:
    """The running server named by the discovery file, if its process lives and /health answers."""
    info = read_discovery(path)
    if info is None or not pid_alive(info.pid):
        return None
    result = _request(info, "GET", "/health", None, {}, timeout)
    if result is None or result[0] != 200 or not isinstance(result[1], dict) or result[1].get("status") != "ok":
        return None
    return info


def _post(info: ServerInfo, path: str, request: dict, token: str | None, timeout: float) -> tuple[int, dict] | None:
    """POST JSON; (status, JSON object) or None when the server is unreachable or answers non-JSON."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    result = _request(info, "POST", path, json.dumps(request).encode("utf-8"), headers, timeout)
    if result is None or not isinstance(result[1], dict):
        return None
    return result


def complete_via_server(info: ServerInfo, request: dict, token: str | None = None,
                        timeout: float = DEFAULT_CLIENT_TIMEOUT_S) -> dict | None:
    """POST one request to /infill. None when the server is unreachable or refuses us (auth, size,
    busy, not a dcode answer), so the caller can answer in-process; contract errors pass through."""
    result = _post(info, "/infill", request, token, timeout)
    if result is None:
        return None
    status, payload = result
    if "content" not in payload:
        return None
    error = payload.get("error")
    if isinstance(error, dict) and error.get("code") == "server_busy":
        return None
    if status in (200, 400, 500) or (status == 503 and isinstance(error, dict)):
        return payload
    return None


def tokenize_via_server(info: ServerInfo, text: str, token: str | None = None,
                        timeout: float = DEFAULT_CLIENT_TIMEOUT_S) -> list[int] | None:
    """The server model's token ids for `text`, or None when it does not answer with them.
    Raises ModelError when the server cannot load its model (ours would not load either)."""
    result = _post(info, "/tokenize", {"content": text}, token, timeout)
    if result is None:
        return None
    status, payload = result
    if status == 200 and isinstance(payload.get("tokens"), list):
        return payload["tokens"]
    if (err := model_error(payload)) is not None:
        raise err
    return None


def model_error(response: dict) -> ModelError | None:
    """The error to raise for a server's `model_unavailable` answer, else None."""
    error = response.get("error")
    if isinstance(error, dict) and error.get("code") == "model_unavailable":
        return ModelError(f"dcode serve: {error.get('message') or 'the model is unavailable'}")
    return None


# --------------------------------------------------------------------------------------------
# `dcode complete` through a running server
# --------------------------------------------------------------------------------------------

def usable_server(flags: dict[str, Any], token: str | None = None) -> ServerInfo | None:
    """A running server that would answer as this process would: same model, and we can authenticate."""
    info = find_server()
    if info is None or (info.token_required and not token):
        return None
    from dcode.settings import load_settings

    try:
        wanted = load_settings(None, flags)[0].model
    except DcodeError:
        return None  # bad local config: answer in-process so its error is reported
    if wanted is not None:
        # The caller chose a model (flag, environment or config): only that model's server will do.
        if info.model is None or _configured_model_dir(wanted) != info.model:
            return None
    return info


def _exit_code(response: dict) -> int:
    """serve_stdio's convention: 0, 3 for model_unavailable, 2 for any other error."""
    error = response.get("error")
    if not error:
        return 0
    return 3 if error.get("code") == "model_unavailable" else 2


def _absolute_filename(data: Any) -> Any:
    """The server resolves paths from its own working directory; make ours absolute."""
    if isinstance(data, dict) and isinstance(data.get("filename"), str) and data["filename"]:
        path = Path(data["filename"]).expanduser()
        if not path.is_absolute():
            data = {**data, "filename": str(path.resolve())}
    return data


def complete_stdio_with_server(stdin: IO[str], stdout: IO[str], flags: dict[str, Any], jsonl: bool,
                               use_server: bool = True, token: str | None = None) -> int:
    """`dcode complete`: forward requests to a running server, else answer in-process.

    If the server stops answering mid-stream, the rest is answered in-process (the model is loaded
    then, once)."""
    info = usable_server(flags, token) if use_server else None
    if info is None:
        return serve_stdio(stdin, stdout, flags, jsonl)
    local: Completer | None = None

    def answer(line: str) -> dict:
        nonlocal info, local
        data = _parse_line(line)
        if data is not None and info is not None:
            response = complete_via_server(info, _absolute_filename(data), token)
            if response is not None:
                return response
            info = None  # it failed once; do not pay a timeout on every following line
        local = local or Completer(flags)
        # answer_line gives byte-identical errors (oversized, malformed JSON) to serve_stdio.
        return local.answer_line(line)

    def emit(response: dict) -> None:
        stdout.write(json.dumps(response) + "\n")
        stdout.flush()

    if not jsonl:
        response = answer(stdin.read())
        emit(response)
        return _exit_code(response)
    for line in stdin:  # one response per line, as serve_stdio
        emit(answer(line))
    return 0


def _parse_line(line: str) -> Any | None:
    """The request in `line`, or None when it is oversized or not JSON (answered locally)."""
    if len(line.encode("utf-8", errors="replace")) > MAX_REQUEST_BYTES:
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


# --------------------------------------------------------------------------------------------
# CLI entry
# --------------------------------------------------------------------------------------------

def run_server(
    host: str | None = None,
    port: int = DEFAULT_PORT,
    flags: dict[str, Any] | None = None,
    token: str | None = None,
    idle_unload_s: float | None = None,
    max_body_bytes: int = MAX_REQUEST_BYTES,
    explicit_host: bool = False,
    verbose: bool = False,
) -> int:
    """`dcode serve`: bind, load the model (fail fast, and warm for the first request), advertise
    the server in the discovery file, and serve until Ctrl-C or SIGTERM."""
    bind = resolve_bind(host, explicit_host)
    server = DcodeServer(flags or {}, bind, port, token=token, idle_unload_s=idle_unload_s,
                         max_body_bytes=max_body_bytes, verbose=verbose)
    previous = _interrupt_on_sigterm()
    try:
        server.load_model()
        server.write_discovery()
        url = base_url(bind, server.port)
        sys.stderr.write(f"dcode: serving {server.model_name} on {url} (infill: POST /infill)\n")
        sys.stderr.flush()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt_on_sigterm() -> Any:
    """Turn SIGTERM into KeyboardInterrupt so the `finally` removing the discovery file runs.
    Returns the handler it replaced (None when not on the main thread, where it cannot)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        return None
