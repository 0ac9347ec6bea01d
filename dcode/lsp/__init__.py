"""`dcode lsp`: a language server (pygls, lsprotocol types) for editors that speak LSP.

It serves `textDocument/inlineCompletion` (ghost text: the hole at the cursor, with the prefix,
suffix and repository context `dcode complete` gathers, taken from the editor's buffer), with
`textDocument/completion` as the fallback; code actions with matching `workspace/executeCommand`
commands ("dcode: fill hole", "dcode: write function", "dcode: refine selection") that answer
with a `WorkspaceEdit`; hint diagnostics on every hole dcode can fill; `$/progress` with the
denoising passes; `window/showMessage` with the CLI's one-line message on model errors.

Modules: `buffers` (an open document: its text, path, positions, the holes and definitions in
it), `config` (editor settings over the command line's), `worker` (the model, kept loaded, and the
one thread that runs it; stopping a job), `suggest` (inline and fallback completion, and reusing a
suggestion the user types into), `actions` (code actions and their commands), `server` (the
pygls server that wires them to LSP methods). Nothing here imports torch until a model runs.
"""

from __future__ import annotations

from typing import Any


def run_lsp(flags: dict[str, Any], tcp_port: int | None) -> None:
    """Serve on stdin/stdout, or on 127.0.0.1:`tcp_port` (for debugging with a client that
    connects over TCP); returns when the client exits."""
    from dcode.lsp.server import build_server
    from dcode.settings import load_settings

    load_settings(None, flags)  # a bad flag is a one-line error here, not a server that never answers
    server = build_server(flags)
    if tcp_port is None:
        server.start_io()
    else:
        server.start_tcp("127.0.0.1", tcp_port)
