"""`dcode bench lsp`: inline completion latency through `dcode lsp` with the model warm, next to
`dcode complete` through `dcode serve` (`dcode bench complete`) for the same request.

The server runs as editors run it, a subprocess on stdin/stdout driven by an LSP client (pygls).
The document is the `dcode complete` request's prefix and suffix, an untitled buffer (so that, as
in that request, there is no file to gather repository context for); it is closed and opened again
before each request, so that every request reaches the model instead of reusing the last answer."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from dcode.bench.complete import COMPLETE_REQUEST, run_bench_complete
from dcode.bench.decoding import Row
from dcode.errors import InputError
from dcode.model.paths import default_model_name

URI = "untitled:bench.py"
TIMEOUT_S = 600.0


def run_bench_lsp(flags: dict[str, Any], runs: int) -> None:
    latencies = asyncio.run(_inline_latencies(flags, runs))
    row = Row("dcode lsp inline completion", 0, 0, sum(latencies) / 1000, latencies)
    sys.stdout.write(
        f"dcode lsp inline completion ({flags.get('model') or default_model_name()}, {runs} requests, model warm)\n"
        f"end to end: p50 {row.percentile(0.5):.0f} ms, p90 {row.percentile(0.9):.0f} ms\n"
    )
    sys.stdout.flush()
    run_bench_complete(flags, runs)


async def _inline_latencies(flags: dict[str, Any], runs: int) -> list[float]:
    """Milliseconds from sending each inline completion request to its answer; the first request
    (which loads the model) is not counted."""
    client = LanguageClient("dcode-bench", "1")
    client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)(lambda params: None)  # hints: not measured
    await client.start_io(sys.executable, "-m", "dcode", "lsp")
    try:
        options = {**flags, "max_tokens": COMPLETE_REQUEST["n_predict"]}
        await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), initialization_options=options)), TIMEOUT_S)
        client.initialized(types.InitializedParams())
        prefix, suffix = COMPLETE_REQUEST["input_prefix"], COMPLETE_REQUEST["input_suffix"]
        line, character = prefix.count("\n"), len(prefix.rsplit("\n", 1)[-1])
        latencies: list[float] = []
        for i in range(runs + 1):
            client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
                uri=URI, language_id="python", version=i, text=prefix + suffix)))
            start = time.perf_counter()
            try:
                await asyncio.wait_for(client.text_document_inline_completion_async(types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=URI),
                    position=types.Position(line=line, character=character),
                    context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
                )), TIMEOUT_S)
            except Exception as err:  # the server's error, as it words it
                raise InputError(f"dcode lsp: {err}") from None
            if i:
                latencies.append((time.perf_counter() - start) * 1000)
            client.text_document_did_close(types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=URI)))
        await client.shutdown_async(None)
        client.exit(None)
        return latencies
    finally:
        await client.stop()
