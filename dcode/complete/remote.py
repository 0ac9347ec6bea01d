"""`dcode complete` with an endpoint: the editor contract answered by the server's model. The
repository context is gathered here, where the files are, and sent with each request.

dcode.remote imports the engine (torch): it is imported when the first request is answered, so
that importing this module costs no more than the rest of `dcode complete`."""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any

from dcode.complete.completer import Completer
from dcode.complete.request import parse_request
from dcode.complete.response import apply_stop, error_response, exit_code, timings

if TYPE_CHECKING:
    from dcode.remote.model import RemoteModel


class RemoteCompleter(Completer):
    """The in-process Completer's request handling and errors, with the server as its model."""

    def ensure_model(self) -> RemoteModel:
        if self.model is None:
            from dcode.remote.model import connect, model_flag_names_remote

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
