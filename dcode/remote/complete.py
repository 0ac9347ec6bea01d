"""`dcode complete` with an endpoint: the editor contract answered by the server's model. The
repository context is gathered here, where the files are, and sent with each request."""

from __future__ import annotations

import json
from typing import IO, Any

from dcode.complete import Completer, apply_stop, error_response, exit_code, parse_request, timings
from dcode.errors import DcodeError
from dcode.remote.model import RemoteModel, connect, model_flag_names_remote
from dcode.settings import load_settings


def endpoint_for(flags: dict[str, Any]) -> str | None:
    """The configured endpoint (flag, DCODE_ENDPOINT or user config); None also for a broken
    config, whose error the in-process path reports."""
    try:
        return load_settings(None, flags)[0].endpoint
    except DcodeError:
        return None


class RemoteCompleter(Completer):
    """The in-process Completer's request handling and errors, with the server as its model."""

    def ensure_model(self) -> RemoteModel:
        if self.model is None:
            model_flag_names_remote(self.settings, self.flags)
            self.model = connect(self.settings)
        return self.model

    def answer(self, data: Any, on_text: Any = None) -> dict:
        return self.guarded(lambda: self._remote(data))

    def _remote(self, data: Any) -> dict:
        request = parse_request(data)
        model = self.ensure_model()
        options = self._options(request)
        if options.max_tokens == 0:  # a client's warm-up: nothing to generate
            return {"content": "", "tokens_predicted": 0, "timings": timings(0, 0, 0.0, 0), "model": model.name}
        path, context = self._where(request, model, options)
        *_, result = model.infill_stream(request.prefix, request.suffix, path=path, context=context,
                                         options=options, instruction=request.instruction)
        text, word = apply_stop(result.text, request.stops)
        return {
            "content": text, "tokens_predicted": len(result.token_ids),
            "stop_type": "word" if word else "eos", "stopping_word": word,
            "timings": timings(0, len(result.token_ids), result.stats.wall_s * 1000, result.stats.forward_passes),
            "model": model.name, "truncated_by_deadline": result.deadline_hit,
        }


def serve_remote(stdin: IO[str], stdout: IO[str], flags: dict[str, Any], jsonl: bool) -> int:
    """As `serve_stdio`: one response per request (per line with `jsonl`), flushed."""
    completer = RemoteCompleter(flags)
    lines = stdin if jsonl else [stdin.read()]
    response: dict = error_response("invalid_json", "no request")
    for line in lines:
        response = completer.answer_line(line)
        stdout.write(json.dumps(response) + "\n")
        stdout.flush()
    return 0 if jsonl else exit_code(response)
