"""The `dcode serve` process: binding rules, uvicorn on its own thread, idle unload, discovery."""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dcode.complete.completer import Completer
from dcode.complete.request import MAX_REQUEST_BYTES
from dcode.errors import InputError
from dcode.server.app import build_app, is_loopback, model_thread
from dcode.server.client import configured_model_dir
from dcode.server.discovery import ServerInfo, base_url, remove_record, write_record

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8012  # llama.vim's and llama.vscode's default endpoint port: no editor config needed
DEFAULT_MAX_QUEUE = 64
KEEP_ALIVE_S = 30
SHUTDOWN_WAIT_S = 10.0  # idle keep-alive sockets are closed, not kept forever


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


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise InputError("--port must be 1-65535")  # 0 (any free port) is for embedding and tests


class DcodeServer:
    """One `Completer` behind uvicorn; binds in the constructor (port 0 = any free port)."""

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
        allow_origins: tuple[str, ...] = (),
        verbose: bool = False,
    ) -> None:
        check_port(port)
        self.completer = Completer(flags)
        self.token = token or None
        self.idle_unload_s = idle_unload_s if idle_unload_s and idle_unload_s > 0 else None
        self.max_body_bytes = max_body_bytes
        self.max_queue = max_queue
        self.allow_origins = frozenset(allow_origins)
        self.verbose = verbose
        self.model_calls = 0  # requests that reached the model thread (warm-ups included)
        self.dropped = 0  # queued requests whose client left before their turn
        self.unloads = 0
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._served = threading.Event()  # serve_forever has returned (or never will run)
        self._served.set()
        self._record: Path | None = None
        self.sock = _listen(host, port)
        self._port = self.sock.getsockname()[1]  # still known after the socket is closed
        self.bind_host = host
        self.loopback_only = is_loopback(host)
        self.model_dir = configured_model_dir(self.completer.settings.model)
        self.app, self.endpoints = build_app(self)
        self._uvicorn = self._make_uvicorn()

    def _make_uvicorn(self):
        import uvicorn

        config = uvicorn.Config(self.app, lifespan="off", log_level="info" if self.verbose else "warning",
                                access_log=self.verbose, timeout_keep_alive=KEEP_ALIVE_S, http="h11",
                                backlog=128)
        return uvicorn.Server(config)

    # -- address -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

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

    @property
    def pending(self) -> int:
        """Model requests running or queued."""
        return self.endpoints.queue.pending

    # -- lifecycle -----------------------------------------------------------------------------
    def serve_forever(self) -> None:
        if self.idle_unload_s:
            threading.Thread(target=self._idle_loop, name="dcode-idle-unload", daemon=True).start()
        self._served.clear()
        try:
            self._uvicorn.run(sockets=[self.sock])
        finally:
            self._served.set()

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="dcode-server", daemon=True)
        self._served.clear()  # so a close() racing the thread's start still waits for it
        thread.start()
        return thread

    def shutdown(self) -> None:
        """Ask serve_forever (on another thread) and the idle watcher to stop."""
        self._stop.set()
        self._uvicorn.should_exit = True

    def close(self) -> None:
        self.shutdown()
        self._served.wait(SHUTDOWN_WAIT_S)  # uvicorn closes the socket; closing it under uvicorn breaks its loop
        self.sock.close()
        self.remove_discovery()

    # -- idle unload ---------------------------------------------------------------------------
    def touch(self) -> None:
        self._last_activity = time.monotonic()

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
        _free_memory()
        self.unloads += 1
        if self.verbose:
            sys.stderr.write(f"dcode: unloaded the model after {self.idle_unload_s:g}s idle\n")
        return True

    # -- requests ------------------------------------------------------------------------------
    def health(self) -> dict:
        return {"status": "ok", "model": self.model_name, "loaded": self.completer.model is not None}

    def load_model(self) -> None:
        """Load the model now, on the model thread (`dcode serve` starts warm and fails fast)."""
        model_thread().submit(self.completer.ensure_model).result()

    # -- discovery -----------------------------------------------------------------------------
    def info(self) -> ServerInfo:
        return ServerInfo(os.getpid(), self.host, self.port, self.token is not None, self.model_dir)

    def write_discovery(self) -> Path:
        self._record = write_record(self.info())
        return self._record

    def remove_discovery(self) -> None:
        """Remove our own record; other servers' records are theirs."""
        path, self._record = self._record, None
        if path is not None:
            remove_record(path, os.getpid(), self.port)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)  # an editor's burst of requests must not be refused
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {base_url(host, port)}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # freeing is best effort; never fail the watcher over it
        pass


def run_server(
    host: str | None = None,
    port: int = DEFAULT_PORT,
    flags: dict[str, Any] | None = None,
    token: str | None = None,
    idle_unload_s: float | None = None,
    max_body_bytes: int = MAX_REQUEST_BYTES,
    explicit_host: bool = False,
    verbose: bool = False,
    allow_origins: tuple[str, ...] = (),
) -> int:
    """`dcode serve`: bind, load the model (fail fast, and warm for the first request), write the
    discovery record, and serve until Ctrl-C or SIGTERM."""
    check_port(port)
    bind = resolve_bind(host, explicit_host)
    server = DcodeServer(flags or {}, bind, port, token=token, idle_unload_s=idle_unload_s,
                         max_body_bytes=max_body_bytes, allow_origins=allow_origins, verbose=verbose)
    previous = _interrupt_on_sigterm()
    try:
        server.load_model()
        server.write_discovery()
        sys.stderr.write(f"dcode: serving {server.model_name} on {base_url(bind, server.port)} (infill: POST /infill)\n")
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
    """Turn SIGTERM into KeyboardInterrupt, so that the `finally` removing the discovery record
    runs (uvicorn re-raises the signal it caught once it has shut down). Returns the handler it
    replaced (None off the main thread, where it cannot)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        return None
