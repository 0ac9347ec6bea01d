"""`dcode complete` through a running server: the thin client.

Stdlib and dcode's settings only (no torch, no model, no web framework), so a request costs an
interpreter start and one HTTP round trip; the model is loaded here only when no usable server
answers, or one stops answering.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from dcode.complete.completer import Completer
from dcode.complete.request import MAX_REQUEST_BYTES
from dcode.complete.response import exit_code
from dcode.complete.stdio import serve_stdio
from dcode.errors import DcodeError, ModelError
from dcode.server.discovery import ServerInfo, live_servers, request

DEFAULT_CLIENT_TIMEOUT_S = 120.0  # a queued request can wait behind others; generous but bounded


def _post(info: ServerInfo, path: str, body: dict, token: str | None, timeout: float) -> tuple[int, dict] | None:
    """POST JSON; (status, JSON object) or None when the server is unreachable or answers non-JSON."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    result = request(info, "POST", path, json.dumps(body).encode("utf-8"), headers, timeout)
    if result is None or not isinstance(result[1], dict):
        return None
    return result


def complete_via_server(info: ServerInfo, body: dict, token: str | None = None,
                        timeout: float = DEFAULT_CLIENT_TIMEOUT_S) -> dict | None:
    """POST one request to /infill. None when the server is unreachable or refuses us (auth, size,
    busy, not a dcode answer), so the caller can answer in-process; contract errors pass through."""
    result = _post(info, "/infill", body, token, timeout)
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


def configured_model_dir(model: str | None) -> str | None:
    """The absolute model directory `model` names, or None if it cannot be resolved."""
    from dcode.model.paths import resolve_model_dir  # no torch

    try:
        return str(resolve_model_dir(model).resolve())
    except DcodeError:
        return None


def usable_server(flags: dict[str, Any], token: str | None = None) -> ServerInfo | None:
    """A running server that would answer as this process would: same model, and we can
    authenticate. With several, the newest that fits."""
    from dcode.settings import load_settings

    try:
        wanted = load_settings(None, flags)[0].model
    except DcodeError:
        return None  # bad local config: answer in-process so its error is reported
    # The caller chose a model (flag, environment or config): only that model's server will do.
    wanted_dir = configured_model_dir(wanted) if wanted is not None else None
    for info in live_servers():
        if info.token_required and not token:
            continue
        if wanted is None or (info.model is not None and info.model == wanted_dir):
            return info
    return None


def _absolute_filename(data: Any) -> Any:
    """The server resolves paths from its own working directory; make ours absolute."""
    if isinstance(data, dict) and isinstance(data.get("filename"), str) and data["filename"]:
        path = Path(data["filename"]).expanduser()
        if not path.is_absolute():
            data = {**data, "filename": str(path.resolve())}
    return data


def _parse_line(line: str) -> Any | None:
    """The request in `line`, or None when it is oversized or not JSON (answered locally)."""
    if len(line.encode("utf-8", errors="replace")) > MAX_REQUEST_BYTES:
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def complete_stdio_with_server(stdin: IO[str], stdout: IO[str], flags: dict[str, Any], jsonl: bool,
                               use_server: bool = True, token: str | None = None,
                               info: ServerInfo | None = None) -> int:
    """`dcode complete`: forward requests to a running server (`info`, else the usable one), else
    answer in-process.

    If the server stops answering mid-stream, the rest is answered in-process (the model is loaded
    then, once)."""
    info = info or (usable_server(flags, token) if use_server else None)
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
        return exit_code(response)
    for line in stdin:  # one response per line, as serve_stdio
        emit(answer(line))
    return 0


def configured_endpoint(flags: dict[str, Any]) -> str | None:
    """The remote model endpoint (flag, DCODE_ENDPOINT or config); None also for a broken config,
    whose error the in-process path reports."""
    from dcode.settings import load_settings

    try:
        return load_settings(None, flags)[0].endpoint
    except DcodeError:
        return None


# `dcode complete` options the fast path understands; anything else goes through the CLI.
_VALUE_OPTIONS = {"--model": "model", "-m": "model", "--device": "device", "--dtype": "dtype"}


def _simple_flags(args: list[str]) -> tuple[dict[str, str], bool] | None:
    """(flags, jsonl) from `dcode complete`'s plain options, or None for anything else."""
    flags: dict[str, str] = {}
    jsonl = False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        name, has_value, value = arg.partition("=")
        if arg == "--jsonl":
            jsonl = True
        elif name in _VALUE_OPTIONS and (has_value or rest):
            flags[_VALUE_OPTIONS[name]] = value if has_value else rest.pop(0)
        else:
            return None
    return flags, jsonl


def thin_complete(args: list[str]) -> int | None:
    """`dcode complete ARGS` through a running server, before the CLI framework is even imported
    (it costs more than the round trip). None when the CLI should handle it: other options, a
    remote endpoint, or no usable server."""
    parsed = _simple_flags(args)
    if parsed is None or configured_endpoint(parsed[0]):
        return None
    flags, jsonl = parsed
    token = os.environ.get("DCODE_SERVE_TOKEN")
    info = usable_server(flags, token)
    if info is None:
        return None
    return complete_stdio_with_server(sys.stdin, sys.stdout, flags, jsonl, token=token, info=info)
