"""The editor contract: llama.cpp `/infill` field names over stdin/stdout.

Request: `input_prefix`, `input_suffix`, `input_extra` ([{filename, text}]), `filename`,
`n_predict`, `temperature`, `seed`, and dcode's decoding options `threshold`, `tokens_per_step`,
`steps`, `block_size`, `top_p`, `deadline_ms`, `min_tokens` (slots that must hold code, not end the
hole) and `initial_tokens` (the hole's first size). Unknown fields are ignored.
Response: `content`, `tokens_predicted`, `timings` {`predicted_ms`, `forward_passes`}, `model`,
and on failure `error` {`code`, `message`} with a stable code:
  invalid_json, invalid_request, model_unavailable, internal_error.
An empty `content` is an answer, not an error (as with llama.cpp).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dcode.diffusion.engine import infill
from dcode.diffusion.sampler import DecodeOptions
from dcode.errors import DcodeError, InputError, ModelError

MAX_REQUEST_BYTES = 4 * 2**20


@dataclass
class InfillRequest:
    prefix: str
    suffix: str
    extra: list[tuple[str, str]]
    filename: str | None
    options: dict[str, Any]


# field -> (type(s) accepted, option name in Settings/DecodeOptions)
NUMERIC_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "n_predict": ((int,), "max_tokens"),
    "temperature": ((int, float), "temperature"),
    "seed": ((int,), "seed"),
    "threshold": ((int, float), "threshold"),
    "tokens_per_step": ((int,), "tokens_per_step"),
    "steps": ((int,), "steps"),
    "block_size": ((int,), "block_size"),
    "top_p": ((int, float), "top_p"),
    "min_tokens": ((int,), "min_tokens"),
    "initial_tokens": ((int,), "initial_tokens"),
}
NON_NEGATIVE = ("n_predict", "min_tokens", "initial_tokens")


def request_fields(options: DecodeOptions) -> dict[str, Any]:
    """The request fields that `parse_request` turns back into these decoding options."""
    values = {field: getattr(options, name) for field, (_, name) in NUMERIC_FIELDS.items()}
    return {field: value for field, value in values.items() if value is not None}


def parse_request(data: Any) -> InfillRequest:
    if not isinstance(data, dict):
        raise InputError("the request must be a JSON object")
    prefix = data.get("input_prefix", "")
    suffix = data.get("input_suffix", "")
    if not isinstance(prefix, str) or not isinstance(suffix, str):
        raise InputError("input_prefix and input_suffix must be strings")
    # llama.vim / llama.vscode send the current line's text left of the cursor as `prompt`.
    prompt = data.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InputError("prompt must be a string")
        prefix += prompt
    extra_raw = data.get("input_extra", []) or []
    if not isinstance(extra_raw, list):
        raise InputError("input_extra must be a list of {filename, text}")
    extra: list[tuple[str, str]] = []
    for chunk in extra_raw:
        if not isinstance(chunk, dict) or not isinstance(chunk.get("text", ""), str):
            raise InputError("input_extra entries must be objects with filename and text")
        extra.append((str(chunk.get("filename", "context")), chunk.get("text", "")))
    filename = data.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise InputError("filename must be a string")
    options: dict[str, Any] = {}
    for field, (types, name) in NUMERIC_FIELDS.items():
        if field in data and data[field] is not None:
            value = data[field]
            if isinstance(value, bool) or not isinstance(value, types):
                raise InputError(f"{field} must be a number")
            if field in NON_NEGATIVE and value < 0:
                raise InputError(f"{field} must not be negative")
            options[name] = value
    if "tokens_per_step" in options:
        options["threshold"] = None
    deadline = data.get("deadline_ms", data.get("t_max_predict_ms"))
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline < 0:
            raise InputError("deadline_ms must be a non-negative number")
        options["deadline_s"] = deadline / 1000
    return InfillRequest(prefix, suffix, extra, filename, options)


def repo_context(filename: str, prefix: str, suffix: str, model, budget: int) -> tuple[str, list[tuple[str, str]]]:
    """The buffer's path as the model should see it (repository-relative, as in training and
    `dcode fill`) and context chunks from the repository index, when `filename` lies inside a
    project."""
    from dcode.context.gather import gather_context
    from dcode.context.index import RepoIndex, find_repo_root
    from dcode.edit.targets import target_in_text

    path = Path(filename).expanduser()
    if not path.parent.is_dir():
        return filename, []
    root = find_repo_root(path.parent)
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = path.name
    target = target_in_text(path, prefix + suffix, len(prefix))
    index = RepoIndex.open(root)
    result = gather_context(target, index, budget, lambda s: len(model.tokenizer.encode(s)))
    return rel, [(c.path, c.text) for c in result.chunks]


def error_response(code: str, message: str, model_name: str | None = None) -> dict:
    return {"content": "", "tokens_predicted": 0, "model": model_name, "error": {"code": code, "message": message}}


class Completer:
    """Answers requests with one model, loaded on first use and kept warm."""

    def __init__(self, flags: dict[str, Any]) -> None:
        from dcode.settings import load_settings

        self.flags = flags
        self.settings, _ = load_settings(None, flags)
        self.model = None

    def ensure_model(self):
        if self.model is None:
            from dcode.model.loader import load_model

            self.model = load_model(self.settings.model, device=self.settings.device, dtype=self.settings.dtype,
                                    int8=self.settings.int8)
        return self.model

    def answer(self, data: Any) -> dict:
        name = self.model.name if self.model is not None else None
        try:
            request = parse_request(data)
            model = self.ensure_model()
            name = model.name
            if request.options.get("max_tokens") == 0:
                # llama.cpp clients send n_predict 0 to warm the server up: load, generate nothing.
                return {"content": "", "tokens_predicted": 0, "timings": {"predicted_ms": 0.0, "forward_passes": 0},
                        "model": name}
            options = self.settings.decode_options(**{k: v for k, v in request.options.items()})
            reserve = options.max_tokens + 16
            budget = max(0, min(self.settings.context_budget, model.config.max_seq_len - reserve))
            context = list(request.extra)
            path = request.filename
            if request.filename and budget > 0:
                path, repo_chunks = repo_context(request.filename, request.prefix, request.suffix, model, budget)
                context = repo_chunks + context
            result = infill(model, request.prefix, request.suffix, path=path, context=context, options=options)
        except ModelError as err:
            return error_response("model_unavailable", str(err), name)
        except InputError as err:
            return error_response("invalid_request", str(err), name)
        except DcodeError as err:
            return error_response("internal_error", str(err), name)
        except Exception as err:  # a torch error or OOM must not end an editor's warm process
            return error_response("internal_error", f"{type(err).__name__}: {err}".splitlines()[0], name)
        response = {
            "content": result.text,
            "tokens_predicted": len(result.token_ids),
            "timings": {
                "predicted_ms": round(result.stats.wall_s * 1000, 3),
                "forward_passes": result.stats.forward_passes,
            },
            "model": name,
            "truncated_by_deadline": result.deadline_hit,
        }
        return response

    def answer_line(self, line: str) -> dict:
        if len(line.encode("utf-8", errors="replace")) > MAX_REQUEST_BYTES:
            return error_response("invalid_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
        if not line.strip():
            return error_response("invalid_json", "empty request: expected a JSON object")
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            return error_response("invalid_json", f"malformed JSON: {exc}")
        return self.answer(data)


def serve_stdio(stdin: IO[str], stdout: IO[str], flags: dict[str, Any], jsonl: bool,
                write: Callable[[str], None] | None = None) -> int:
    """One request (or, with jsonl, one per line) in; one response per request out, flushed."""
    completer = Completer(flags)
    emit = write or (lambda text: (stdout.write(text), stdout.flush()))
    if not jsonl:
        response = completer.answer_line(stdin.read())
        emit(json.dumps(response) + "\n")
        return 0 if "error" not in response else (3 if response["error"]["code"] == "model_unavailable" else 2)
    for line in stdin:  # one response per line, a blank one included: editors pair them up by order
        emit(json.dumps(completer.answer_line(line)) + "\n")
    return 0
