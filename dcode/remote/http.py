"""JSON over HTTP to a model server, on the standard library: a timeout on every request,
retries with exponential backoff on 429, 5xx and dropped connections (honouring Retry-After),
and one-line errors. A server that cannot be reached is a `ModelError` (exit 3): dcode never
falls back to another model behind the user's back."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dcode.errors import InputError, ModelError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_RETRIES = 3
BACKOFF_S = 0.5  # first wait; doubled after each retry
MAX_WAIT_S = 30.0  # a Retry-After longer than this is capped


@dataclass
class Reply:
    """A server's answer: its status and its JSON body (None when the body is not JSON)."""

    status: int
    body: Any
    text: str
    retry_after: str | None = None  # the header, as sent


def parse_endpoint(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, base path) of an endpoint URL; a bad one is a usage error."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"endpoint {url!r}: expected a URL such as http://127.0.0.1:8012")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InputError(f"endpoint {url!r}: bad port") from None
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


@dataclass
class HttpClient:
    """One endpoint. `sleep` is injectable so that tests of the backoff do not wait."""

    endpoint: str
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = DEFAULT_RETRIES
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        self.scheme, self.host, self.port, self.base = parse_endpoint(self.endpoint)

    def get(self, path: str) -> Reply:
        return self.request("GET", path, None)

    def post(self, path: str, body: dict) -> Reply:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict | None) -> Reply:
        """The reply, after retrying what a retry can cure; ModelError when the server stays
        unreachable, too slow or overloaded."""
        wait = BACKOFF_S
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                reply = self._once(method, path, body)
            except TimeoutError:
                # A slow model is not made faster by asking again: say so at once.
                raise ModelError(f"{self.endpoint} did not answer {path} within {self.timeout:g} s "
                                 "(raise `timeout` in the config or DCODE_TIMEOUT)") from None
            except (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead) as exc:
                if last or isinstance(exc, ConnectionRefusedError):
                    raise ModelError(f"cannot reach the model server at {self.endpoint}: {_reason(exc)}") from None
                self.sleep(wait)
                wait *= 2
                continue
            except (OSError, http.client.HTTPException) as exc:
                raise ModelError(f"cannot reach the model server at {self.endpoint}: {_reason(exc)}") from None
            if reply.status not in RETRY_STATUSES:
                return reply
            if last:
                raise ModelError(f"{self.endpoint}{path} answered HTTP {reply.status} after {self.retries + 1} "
                                 f"tries: {error_message(reply)}")
            self.sleep(min(retry_after(reply) or wait, MAX_WAIT_S))
            wait *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def _once(self, method: str, path: str, body: dict | None) -> Reply:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            conn.request(method, self.base + path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read().decode("utf-8", errors="replace")
            reply = Reply(response.status, None, raw, response.getheader("Retry-After"))
        finally:
            conn.close()
        try:
            reply.body = json.loads(raw)
        except ValueError:
            pass  # kept as text: the caller says what it expected
        return reply


def retry_after(reply: Reply) -> float | None:
    """Retry-After in seconds, when the server sent it as a number."""
    try:
        return max(0.0, float(reply.retry_after)) if reply.retry_after is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def error_message(reply: Reply) -> str:
    """The server's own words for an error: OpenAI's and dcode's `error.message`, llama.cpp's
    too, else the start of the body."""
    body = reply.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"]).splitlines()[0]
        if isinstance(error, str):
            return error.splitlines()[0]
        if isinstance(body.get("message"), str):
            return body["message"].splitlines()[0]
    return " ".join(reply.text.split())[:200] or "(empty body)"


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def expect_json(reply: Reply, path: str, endpoint: str) -> dict:
    """The JSON object of a successful reply. A 4xx is the request's fault (usage error, with
    the server's message); anything else that is not a JSON object is a broken server."""
    if 400 <= reply.status < 500:
        if reply.status in (401, 403):
            raise ModelError(f"{endpoint}{path}: HTTP {reply.status}, the server refused the API key "
                             f"(set DCODE_API_KEY): {error_message(reply)}")
        raise InputError(f"{endpoint}{path}: HTTP {reply.status}: {error_message(reply)}")
    if reply.status != 200:
        raise ModelError(f"{endpoint}{path}: HTTP {reply.status}: {error_message(reply)}")
    if not isinstance(reply.body, dict):
        raise ModelError(f"{endpoint}{path}: malformed reply (expected a JSON object): {reply.text[:80]!r}")
    return reply.body
