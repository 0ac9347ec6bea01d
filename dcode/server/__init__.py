"""`dcode serve`: keep the model warm behind a local HTTP server, and `dcode complete`'s client.

Endpoints (JSON in, JSON out; `"stream": true` answers with Server-Sent Events):
  POST /infill, /completion  llama.cpp's, so llama.vim and llama.vscode work unchanged
  POST /refine               revise a draft in place (`remask` k, `positions` or `lines` [a, b])
  POST /tokenize             llama.cpp's: `content` in, `tokens` out
  GET  /props                llama.cpp's, with dcode's capabilities under `dcode`
  POST /v1/completions       OpenAI's text completions (`n`, list prompts, streaming)
  GET  /v1/models[/{id}]     OpenAI's model list and retrieve
  GET  /health               {"status": "ok", "model": name, "loaded": bool}; never needs the token

Modules: `app` (routes, queue, checks), `runner` (the process), `llama`/`openai` (field
mapping), `sse` (streaming), `discovery` (one record per server) and `client` (the thin,
torch-free client). Importing this package loads only the last two; the server side loads on
first use of its names.
"""

from __future__ import annotations

from typing import Any

from dcode.server.client import (
    complete_stdio_with_server,
    complete_via_server,
    model_error,
    tokenize_via_server,
    usable_server,
)
from dcode.server.discovery import ServerInfo, find_server, runtime_dir

_SERVER_SIDE = {"DcodeServer": "runner", "run_server": "runner", "resolve_bind": "runner"}

__all__ = ["ServerInfo", "complete_stdio_with_server", "complete_via_server", "find_server", "model_error",
           "runtime_dir", "tokenize_via_server", "usable_server", *_SERVER_SIDE]


def __getattr__(name: str) -> Any:
    # Lazy: starlette and uvicorn cost the thin client's import time and are not needed there.
    if name in _SERVER_SIDE:
        from importlib import import_module

        return getattr(import_module(f"dcode.server.{_SERVER_SIDE[name]}"), name)
    raise AttributeError(name)
