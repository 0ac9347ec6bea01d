"""`dcode serve`'s routes on Starlette; uvicorn speaks HTTP (framing, keep-alive, streaming).

One model call runs at a time, on one long-lived thread, first come first served; a request whose
client hung up while queued (editors cancel stale completions as you type) is dropped unrun, and a
stream whose client hung up stops after the current pass.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dcode.complete.response import error_response
from dcode.errors import InputError
from dcode.server import llama, openai
from dcode.server.sse import SentText, StreamDiverged, event

if TYPE_CHECKING:
    from dcode.server.runner import DcodeServer

# error.code -> HTTP status.
STATUS_FOR_CODE = {
    "invalid_json": 400,
    "invalid_request": 400,
    "model_unavailable": 503,
    "server_busy": 503,
    "internal_error": 500,
}
PUBLIC = frozenset({"/health"})


class HttpError(Exception):
    """A request we answer with `status` and a contract-shaped error body."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


def status_of(answer: dict) -> int:
    error = answer.get("error")
    return STATUS_FOR_CODE.get(error.get("code"), 200) if isinstance(error, dict) else 200


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals; other names count as non-loopback (we do not
    trust a resolver to decide whether a port is exposed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------
# The model thread
# ----------------------------------------------------------------------------------------------

_model_executor: ThreadPoolExecutor | None = None
_model_executor_guard = threading.Lock()


def model_thread() -> ThreadPoolExecutor:
    """The one thread that runs every model call in this process, in submission order.

    Torch's OpenMP pool is per calling thread: one long-lived thread keeps one pool (short-lived
    threads spawn a pool per request, which on a loaded machine costs seconds), and gives
    first-come-first-served queueing for free.
    """
    global _model_executor
    with _model_executor_guard:
        if _model_executor is None:
            _model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcode-model")
        return _model_executor


class Queue:
    """Admission (at most `max_queue` waiting), arrival order, and dropping the departed."""

    def __init__(self, server: DcodeServer) -> None:
        self.server = server
        self.pending = 0
        self.guard = threading.Lock()

    async def run(self, request: Request, call: Callable[[], Any]) -> Any:
        """`call()` on the model thread after the requests before it; None if the client left
        while queued."""
        with self.guard:
            if self.pending > self.server.max_queue:
                raise HttpError(503, "server_busy", f"more than {self.server.max_queue} requests are waiting; try again")
            self.pending += 1
        self.server.touch()
        gone = threading.Event()
        try:
            future = model_thread().submit(self._turn, call, gone)
        except RuntimeError:  # the executor is shut down: the interpreter is exiting
            self._done()
            raise HttpError(503, "server_busy", "the server is shutting down") from None
        watcher = asyncio.create_task(_watch_disconnect(request, gone))
        try:
            return await asyncio.wrap_future(future)
        finally:
            watcher.cancel()

    def _turn(self, call: Callable[[], Any], gone: threading.Event) -> Any:
        try:
            if gone.is_set():
                self.server.dropped += 1
                return None
            self.server.model_calls += 1
            return call()
        finally:
            self._done()

    def _done(self) -> None:
        self.server.touch()
        with self.guard:
            self.pending -= 1


async def _watch_disconnect(request: Request, gone: threading.Event) -> None:
    """Set `gone` when the client closes its connection (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    gone.set()


# ----------------------------------------------------------------------------------------------
# Checks and bodies
# ----------------------------------------------------------------------------------------------

def check_access(server: DcodeServer, request: Request) -> None:
    """Host (DNS rebinding), Origin (any web page can POST to localhost) and bearer token."""
    host = request.headers.get("host")
    if server.loopback_only and host is not None and not is_loopback(urlsplit(f"//{host}").hostname or ""):
        raise HttpError(403, "forbidden", f"Host {host!r} is not a loopback address")
    origin = request.headers.get("origin")
    if origin is not None and origin not in server.allow_origins:
        raise HttpError(403, "forbidden", f"cross-origin requests are refused (Origin {origin!r}); "
                        "allow one with `dcode serve --allow-origin`")
    if server.token is None or request.url.path in PUBLIC:
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), server.token.encode()):
        raise HttpError(401, "unauthorized", "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


async def read_json(server: DcodeServer, request: Request) -> Any:
    import json

    too_large = HttpError(413, "invalid_request", f"the request body is over the {server.max_body_bytes}-byte limit",
                          {"Connection": "close"})  # the unread rest of the body must not be parsed as a request
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > server.max_body_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > server.max_body_bytes:
            raise too_large
    if not body:
        raise HttpError(400, "invalid_json", "empty request body: expected a JSON object")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_json", "the request body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise HttpError(400, "invalid_json", f"malformed JSON: {exc}") from None


def json_answer(answer: dict | None) -> Response:
    if answer is None:  # the client left: nobody reads this
        return Response(status_code=499)
    return JSONResponse(answer, status_code=status_of(answer))


def _input_error(err: InputError) -> HttpError:
    return HttpError(400, "invalid_request", str(err))


# ----------------------------------------------------------------------------------------------
# Endpoints
# ----------------------------------------------------------------------------------------------

class Endpoints:
    def __init__(self, server: DcodeServer) -> None:
        self.server = server
        self.queue = Queue(server)
        self.producers: set[asyncio.Task] = set()  # streams' model calls, which outlive a departed client

    @property
    def completer(self):
        return self.server.completer

    async def health(self, request: Request) -> Response:
        return JSONResponse(self.server.health())

    async def models(self, request: Request) -> Response:
        return JSONResponse(openai.models(self.server.model_name or "dcode"))

    async def model(self, request: Request) -> Response:
        name, served = request.path_params["name"], self.server.model_name or "dcode"
        if name != served:
            return JSONResponse(openai.not_found(name, served), status_code=404)
        return JSONResponse(openai.model_object(served))

    async def props(self, request: Request) -> Response:
        return json_answer(await self.queue.run(request, self.completer.props))

    async def tokenize(self, request: Request) -> Response:
        data = await read_json(self.server, request)
        return json_answer(await self.queue.run(request, lambda: self.completer.tokenize(data)))

    async def refine(self, request: Request) -> Response:
        data = await read_json(self.server, request)
        return json_answer(await self.queue.run(request, lambda: self.completer.refine(data)))

    async def infill(self, request: Request) -> Response:
        """llama.cpp's /infill and /completion (its `prompt` is the text before the hole)."""
        data = await read_json(self.server, request)
        try:
            llama.check_request(data)
        except InputError as err:
            raise _input_error(err) from None
        if isinstance(data, dict) and data.get("stream"):
            return self._stream(self._llama_events(request, data))
        answer = await self.queue.run(request, lambda: self.completer.answer(data))
        if answer is not None and isinstance(data, dict):
            answer = llama.select_fields(answer, data.get("response_fields"))
        return json_answer(answer)

    async def completions(self, request: Request) -> Response:
        data = await read_json(self.server, request)
        served = self.server.model_name or "dcode"
        if (name := openai.unknown_model(data, served)) is not None:
            return JSONResponse(openai.not_found(name, served), status_code=404)
        try:
            wanted = openai.choices(data)
        except InputError as err:
            raise _input_error(err) from None
        if data.get("stream"):
            return self._stream(self._openai_events(request, wanted))
        answers = await self.queue.run(request, lambda: [(c, self.completer.answer(c.request)) for c in wanted])
        if answers is None:
            return json_answer(None)
        failed = next((a for _, a in answers if "error" in a), None)
        if failed is not None:
            return json_answer(failed)
        return JSONResponse(openai.response(answers, self.server.model_name))

    # -- streaming --------------------------------------------------------------------------
    @staticmethod
    def _stream(events: AsyncIterator[bytes]) -> Response:
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def _answer_stream(self, request: Request, data: dict) -> AsyncIterator[tuple[str, Any]]:
        """("text", delta) while the hole is denoised, then ("answer", final answer or error)."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()
        sent = SentText()

        def on_text(committed: str) -> bool:
            if delta := sent.extend(committed):
                loop.call_soon_threadsafe(items.put_nowait, ("text", delta))
            return not cancelled.is_set()

        async def produce() -> None:
            try:
                answer = await self.queue.run(request, lambda: self.completer.answer(data, on_text))
            except HttpError as err:
                answer = error_response(err.code, str(err), self.server.model_name)
            except Exception as err:
                answer = error_response("internal_error", f"{type(err).__name__}: {err}", self.server.model_name)
            await items.put(("answer", answer))

        producer = asyncio.create_task(produce())
        self.producers.add(producer)  # the loop keeps only weak references to tasks
        producer.add_done_callback(self.producers.discard)
        try:
            while True:
                kind, value = await items.get()
                if kind == "answer":
                    if value is not None and "error" not in value:
                        try:
                            value = {**value, "streamed_rest": sent.rest(value["content"])}
                        except StreamDiverged as err:
                            value = error_response("internal_error", str(err), self.server.model_name)
                    yield kind, value
                    return
                yield kind, value
        finally:
            cancelled.set()  # the client left mid-stream: stop after the current pass

    async def _llama_events(self, request: Request, data: dict) -> AsyncIterator[bytes]:
        async for kind, value in self._answer_stream(request, data):
            if kind == "text":
                yield event(llama.partial_chunk(value))
            elif value is not None:
                rest = value.pop("streamed_rest", "")
                yield event(value if "error" in value else llama.final_chunk(value, rest))

    async def _openai_events(self, request: Request, wanted: list[openai.Choice]) -> AsyncIterator[bytes]:
        cid, created, model = openai.completion_id(), int(time.time()), self.server.model_name
        for choice in wanted:
            async for kind, value in self._answer_stream(request, choice.request):
                if kind == "text":
                    yield event(openai.chunk(cid, created, model, choice.index, value, None))
                elif value is None:
                    return
                elif "error" in value:
                    yield event({"error": value["error"]})
                    return
                else:
                    yield event(openai.chunk(cid, created, model, choice.index, value["streamed_rest"],
                                             openai.finish_reason(value)))
        yield event("[DONE]")


# ----------------------------------------------------------------------------------------------
# The application
# ----------------------------------------------------------------------------------------------

def build_app(server: DcodeServer) -> tuple[Callable, Endpoints]:
    """The ASGI application, and its endpoints (whose queue the server reports on)."""
    ep = Endpoints(server)
    routes = [
        Route("/health", ep.health, methods=["GET"]),
        Route("/props", ep.props, methods=["GET"]),
        Route("/v1/models", ep.models, methods=["GET"]),
        Route("/v1/models/{name:path}", ep.model, methods=["GET"]),
        Route("/infill", ep.infill, methods=["POST"]),
        Route("/completion", ep.infill, methods=["POST"]),
        Route("/refine", ep.refine, methods=["POST"]),
        Route("/tokenize", ep.tokenize, methods=["POST"]),
        Route("/v1/completions", ep.completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, HttpError: _our_error,
                                                      Exception: _crash})
    app.state.server = server
    return _checked(app, server), ep


def _checked(app: Starlette, server: DcodeServer):
    """Access checks before routing, so a refused request learns nothing about our paths."""
    async def asgi(scope, receive, send) -> None:
        if scope["type"] == "http":
            try:
                check_access(server, Request(scope))
            except HttpError as err:
                await _error_response(server, err)(scope, receive, send)
                return
        await app(scope, receive, send)
    return asgi


def _error_response(server: DcodeServer, err: HttpError) -> Response:
    return JSONResponse(error_response(err.code, str(err), server.model_name), status_code=err.status,
                        headers=err.headers)


async def _our_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return _error_response(request.app.state.server, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's 404 and 405, in our JSON shape."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        err = HttpError(404, "not_found", f"no endpoint {path}; try POST /infill, POST /v1/completions or GET /health")
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        err = HttpError(405, "method_not_allowed", f"{path} accepts {allowed}", {"Allow": allowed})
    else:
        err = HttpError(exc.status_code, "invalid_request", str(exc.detail))
    return _error_response(request.app.state.server, err)


async def _crash(request: Request, exc: Exception) -> Response:
    """Never let one request take the server down (uvicorn logs the traceback)."""
    err = HttpError(500, "internal_error", f"{type(exc).__name__}: {exc}")
    return _error_response(request.app.state.server, err)
