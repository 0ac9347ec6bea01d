"""The editor contract: llama.cpp `/infill` field names, answered by one warm model.

Request: `input_prefix`, `input_suffix`, `input_extra` ([{filename, text}]), `filename`,
`n_predict` (-1: up to the `max_tokens` setting), `temperature`, `seed`, `stop`, `instruction`,
`gather_context` (false: `input_extra` is the whole context and `filename` the path as given), and
dcode's decoding options `threshold`, `tokens_per_step`, `steps`, `block_size`, `top_p`,
`deadline_ms`, `min_tokens` (slots that must hold code, not end the hole) and `initial_tokens`
(the hole's first size). Unknown fields are ignored.
Response: llama.cpp's `content`, `tokens_predicted`, `tokens_evaluated`, `tokens_cached`,
`truncated`, `stop_type`, `stopping_word`, `generation_settings`, `timings` (llama.cpp's, plus
`forward_passes`), `model`, and dcode's own `dcode` {token_ids, spans, confidences,
forward_passes, chat_template}; on failure `error` {`code`, `message`} with a stable code:
  invalid_json, invalid_request, model_unavailable, internal_error.
An empty `content` is an answer, not an error (as with llama.cpp).

`Completer` answers `dcode complete` in-process and every model endpoint of `dcode serve`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dcode.errors import DcodeError, InputError, ModelError

if TYPE_CHECKING:  # both import torch: only when a model runs
    from dcode.diffusion.engine import Completion, Prompt
    from dcode.diffusion.sampler import DecodeOptions, HoleState

MAX_REQUEST_BYTES = 4 * 2**20


@dataclass
class InfillRequest:
    prefix: str
    suffix: str
    extra: list[tuple[str, str]]
    filename: str | None
    options: dict[str, Any]
    stops: list[str] = field(default_factory=list)
    instruction: str | None = None
    gather_context: bool = True
    unlimited: bool = False  # n_predict -1


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


def stop_sequences(data: dict) -> list[str]:
    """llama.cpp's and OpenAI's `stop`: a string or a list of strings."""
    stop = data.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise InputError("stop must be a string or a list of strings")


def apply_stop(text: str, stops: list[str]) -> tuple[str, str]:
    """`text` cut before its earliest stop sequence, and that sequence ("" when none occurs)."""
    found = [(i, s) for s in stops if (i := text.find(s)) >= 0]
    if not found:
        return text, ""
    cut, word = min(found)
    return text[:cut], word


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
    unlimited = data.get("n_predict") == -1 and not isinstance(data.get("n_predict"), bool)
    options = _numeric_options({k: v for k, v in data.items() if not (unlimited and k == "n_predict")})
    instruction = data.get("instruction")
    if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
        raise InputError("instruction must be a non-empty string")
    gather = data.get("gather_context", True)
    if not isinstance(gather, bool):
        raise InputError("gather_context must be true or false")
    return InfillRequest(prefix, suffix, extra, filename, options, stop_sequences(data), instruction, gather,
                         unlimited)


def _numeric_options(data: dict) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for field_name, (types, name) in NUMERIC_FIELDS.items():
        if field_name in data and data[field_name] is not None:
            value = data[field_name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise InputError(f"{field_name} must be a number")
            if field_name in NON_NEGATIVE and value < 0:
                raise InputError(f"{field_name} must not be negative" + (" (or -1)" if field_name == "n_predict" else ""))
            options[name] = value
    if "tokens_per_step" in options:
        options["threshold"] = None
    deadline = data.get("deadline_ms", data.get("t_max_predict_ms"))
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline < 0:
            raise InputError("deadline_ms must be a non-negative number")
        if deadline > 0:  # llama.cpp's t_max_predict_ms 0 means no limit
            options["deadline_s"] = deadline / 1000
    return options


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


def committed_text(tok, state: HoleState, prompt: Prompt, stops: list[str]) -> str:
    """The part of the hole's text no later pass can change: the committed tokens from the left
    edge up to the first mask, less the last one (its characters may merge with the next token's
    bytes), less the healed lead and room for the healed trail, cut before any stop sequence and
    before anything that may yet become one. Always a prefix of the final `content`."""
    ids: list[int] = []
    for token in state.tokens:
        if token == state.mask_id or (token in tok.stop_ids and token != tok.pad_id):
            break
        if token != tok.pad_id:
            ids.append(token)
    text = tok.decode(ids[:-1]).rstrip("\ufffd")
    if not text.startswith(prompt.lead):
        return ""
    text = text[len(prompt.lead) : max(len(prompt.lead), len(text) - len(prompt.trail))]
    text, _ = apply_stop(text, stops)
    # A stop sequence that starts here but is not complete yet would cut what we had sent.
    held = next((i for i in range(len(text)) if any(s.startswith(text[i:]) for s in stops)), len(text))
    return text[:held]


def tokens_cached(model) -> int:
    """Context tokens whose keys/values the last pass took from the previous request's (llama.cpp's
    `cache_prompt`). Only a causal-context model has them: under bidirectional attention a shared
    prefix's keys/values change with everything after it, so no reuse would be exact."""
    return model.prefix_cache.reused if model.config.causal_context else 0


def threads_for(setting: int | None) -> int:
    """Torch's intra-op threads: the setting, else one core left free for the editor and the rest
    of the machine, at most 4 (the small models gain nothing past that, and more threads than
    idle cores make every pass wait for the slowest)."""
    return setting or max(1, min(4, (os.cpu_count() or 1) - 1))


class Completer:
    """Answers requests with one model, loaded on first use and kept warm."""

    def __init__(self, flags: dict[str, Any]) -> None:
        from dcode.settings import load_settings

        self.flags = flags
        self.settings, _ = load_settings(None, flags)
        self.model = None

    def ensure_model(self):
        if self.model is None:
            import torch

            from dcode.model.loader import load_model

            torch.set_num_threads(threads_for(self.settings.threads))
            self.model = load_model(self.settings.model, device=self.settings.device, dtype=self.settings.dtype,
                                    int8=self.settings.int8)
        return self.model

    @property
    def model_name(self) -> str | None:
        return self.model.name if self.model is not None else None

    def guarded(self, run: Callable[[], dict]) -> dict:
        """`run()`, with every failure turned into a contract error (a torch error or OOM must not
        end an editor's warm process)."""
        try:
            return run()
        except ModelError as err:
            return error_response("model_unavailable", str(err), self.model_name)
        except InputError as err:
            return error_response("invalid_request", str(err), self.model_name)
        except DcodeError as err:
            return error_response("internal_error", str(err), self.model_name)
        except Exception as err:
            return error_response("internal_error", f"{type(err).__name__}: {err}".splitlines()[0], self.model_name)

    def answer(self, data: Any, on_text: Callable[[str], bool] | None = None) -> dict | None:
        """The /infill answer. `on_text(committed)` after every pass streams it; when it returns
        False (the client left) the generation stops and the answer is None."""
        return self.guarded(lambda: self._infill(parse_request(data), on_text))

    def refine(self, data: Any) -> dict:
        """The /refine answer: the draft revised in place (`remask` k or `lines` [a, b])."""
        return self.guarded(lambda: self._refine(data))

    def props(self) -> dict:
        """llama.cpp's GET /props, with what this model can do in `dcode`."""
        def run() -> dict:
            from dcode.diffusion.engine import has_chat_template

            model = self.ensure_model()
            return {
                "default_generation_settings": self.generation_settings(self.settings.decode_options(), [], False),
                "total_slots": 1,
                "model_path": str(model.path or model.name),
                "dcode": {"model": model.name, "chat_template": has_chat_template(model),
                          "max_seq_len": model.config.max_seq_len, "refine": True, "confidences": True},
            }
        return self.guarded(run)

    def tokenize(self, data: Any) -> dict:
        """llama.cpp's /tokenize: `content` in, `tokens` out."""
        def run() -> dict:
            if not isinstance(data, dict) or not isinstance(data.get("content"), str):
                raise InputError("send {\"content\": \"text\"}")
            model = self.ensure_model()
            return {"tokens": model.tokenizer.encode(data["content"]), "model": model.name}
        return self.guarded(run)

    def generation_settings(self, options: DecodeOptions, stops: list[str], stream: bool) -> dict:
        model = self.ensure_model()
        return {
            "n_ctx": model.config.max_seq_len, "n_predict": options.max_tokens, "model": model.name,
            "seed": options.seed, "temperature": options.temperature, "top_p": options.top_p,
            "threshold": options.threshold, "tokens_per_step": options.tokens_per_step, "steps": options.steps,
            "block_size": options.block_size, "stop": stops, "stream": stream,
            "t_max_predict_ms": round(options.deadline_s * 1000) if options.deadline_s else 0,
            "t_max_prompt_ms": -1,  # the prompt is read within each pass: there is no separate phase to limit
        }

    # -- the model runs ----------------------------------------------------------------------
    def _options(self, request: InfillRequest) -> DecodeOptions:
        return self.settings.decode_options(**request.options)

    def _where(self, request: InfillRequest, model, options: DecodeOptions) -> tuple[str | None, list]:
        """The path the model sees and the context chunks (gathered from the repository unless the
        client gathered them itself)."""
        context = list(request.extra)
        budget = max(0, min(self.settings.context_budget, model.config.max_seq_len - options.max_tokens - 16))
        if request.gather_context and request.filename and budget > 0:
            path, repo_chunks = repo_context(request.filename, request.prefix, request.suffix, model, budget)
            return path, repo_chunks + context
        return request.filename, context

    def _infill(self, request: InfillRequest, on_text: Callable[[str], bool] | None) -> dict | None:
        from dcode.diffusion.engine import Completion, build_prompt, infill_stream

        model = self.ensure_model()
        options = self._options(request)
        if options.max_tokens == 0:
            # llama.cpp clients send n_predict 0 to warm the server up: load, generate nothing.
            return self._response(request, options, None, 0, False, 0)
        path, context = self._where(request, model, options)
        kwargs = dict(path=path, context=context, instruction=request.instruction)
        prompt = build_prompt(model, request.prefix, request.suffix, reserve=options.max_tokens, **kwargs)
        cached = None
        for item in infill_stream(model, request.prefix, request.suffix, options=options, **kwargs):
            cached = cached if cached is not None else tokens_cached(model)  # read by the first pass
            if isinstance(item, Completion):
                return self._response(request, options, item, *self._prompt_size(model, request, prompt), cached or 0)
            if on_text is not None and not on_text(committed_text(model.tokenizer, item, prompt, request.stops)):
                return None
        raise AssertionError("infill_stream ends with a Completion")

    def _prompt_size(self, model, request: InfillRequest, prompt: Prompt) -> tuple[int, bool]:
        """Tokens the model read around the hole, and whether the prefix or suffix was cut to fit."""
        tok = model.tokenizer
        whole = len(tok.encode(request.prefix)) + len(tok.encode(request.suffix))
        return len(prompt.before) + len(prompt.after), whole > len(prompt.before) + len(prompt.after)

    def _refine(self, data: Any) -> dict:
        from dcode.diffusion.engine import build_prompt, refine

        request = parse_request(data)
        model = self.ensure_model()
        draft = self._draft(data.get("draft"), model)
        remask, lines = _refine_target(data)
        options = self._options(request)
        path, context = self._where(request, model, options)
        result = refine(model, request.prefix, request.suffix, draft, remask=remask, lines=lines, path=path,
                        context=context, options=options, instruction=request.instruction)
        prompt = build_prompt(model, request.prefix, request.suffix, path=path, context=context,
                              reserve=len(draft.token_ids) + options.max_tokens, instruction=request.instruction)
        return self._response(request, options, result, *self._prompt_size(model, request, prompt),
                              tokens_cached(model))

    def _draft(self, draft: Any, model) -> Completion:
        from dcode.diffusion.engine import Completion
        from dcode.diffusion.sampler import DecodeStats

        if not isinstance(draft, dict):
            raise InputError("draft must be an object {token_ids, confidences}")
        ids, conf = draft.get("token_ids"), draft.get("confidences")
        vocab = model.tokenizer.vocab_size
        if not isinstance(ids, list) or not ids or not all(_is_int(i) and 0 <= i < vocab for i in ids):
            raise InputError(f"draft.token_ids must be a non-empty list of token ids below {vocab}")
        if not isinstance(conf, list) or not all(_is_number(c) for c in conf):
            raise InputError("draft.confidences must be a list of numbers")
        if len(conf) != len(ids):
            raise InputError(f"draft has {len(ids)} token_ids but {len(conf)} confidences")
        return Completion(model.tokenizer.decode(ids), ids, [float(c) for c in conf], DecodeStats())

    def _response(self, request: InfillRequest, options: DecodeOptions, result: Completion | None,
                  prompt_n: int, truncated: bool, cached: int) -> dict:
        from dcode.diffusion.engine import has_chat_template

        model = self.ensure_model()
        tok = model.tokenizer
        text, word = apply_stop(result.text if result else "", request.stops)
        ids = result.token_ids if result else []
        spans = [(s, min(e, len(text))) for s, e in tok.char_spans(ids) if s < len(text)]
        ids, conf = ids[: len(spans)], (result.confidences[: len(spans)] if result else [])
        passes = result.stats.forward_passes if result else 0
        wall_ms = result.stats.wall_s * 1000 if result else 0.0
        limited = result is not None and not word and len(result.token_ids) >= options.max_tokens
        return {
            "content": text, "tokens_predicted": len(ids), "tokens_evaluated": prompt_n,
            "tokens_cached": cached, "truncated": truncated, "stop": True,
            "stop_type": "word" if word else "limit" if limited else "eos", "stopping_word": word,
            "generation_settings": self.generation_settings(options, request.stops, False),
            "timings": timings(prompt_n, len(ids), wall_ms, passes),
            "model": model.name,
            "truncated_by_deadline": bool(result and result.deadline_hit),
            "dcode": {"token_ids": ids, "spans": [list(s) for s in spans],
                      "confidences": [round(c, 4) for c in conf], "forward_passes": passes,
                      "chat_template": has_chat_template(model)},
        }

    def answer_line(self, line: str) -> dict:
        if len(line.encode("utf-8", errors="replace")) > MAX_REQUEST_BYTES:
            return error_response("invalid_request", f"request larger than {MAX_REQUEST_BYTES} bytes")
        if not line.strip():
            return error_response("invalid_json", "empty request: expected a JSON object")
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            return error_response("invalid_json", f"malformed JSON: {exc}")
        answer = self.answer(data)
        assert answer is not None  # no on_text, so it cannot be cancelled
        return answer


def timings(prompt_n: int, predicted_n: int, predicted_ms: float, forward_passes: int) -> dict:
    """llama.cpp's timings. A diffusion pass reads the prompt and writes the hole together, so
    all the time is `predicted_ms` and the prompt's share is 0 ms."""
    return {
        "prompt_n": prompt_n, "prompt_ms": 0.0, "prompt_per_token_ms": 0.0, "prompt_per_second": 0.0,
        "predicted_n": predicted_n, "predicted_ms": round(predicted_ms, 3),
        "predicted_per_token_ms": round(predicted_ms / predicted_n, 3) if predicted_n else 0.0,
        "predicted_per_second": round(predicted_n * 1000 / predicted_ms, 3) if predicted_ms else 0.0,
        "forward_passes": forward_passes,
    }


def _refine_target(data: dict) -> tuple[int | None, tuple[int, int] | None]:
    remask, lines = data.get("remask"), data.get("lines")
    if (remask is None) == (lines is None):
        raise InputError("send exactly one of remask (a token count) or lines ([first, last])")
    if remask is not None:
        if not _is_int(remask) or remask < 1:
            raise InputError("remask must be a positive whole number")
        return remask, None
    if not (isinstance(lines, list) and len(lines) == 2 and all(_is_int(n) for n in lines)):
        raise InputError("lines must be [first, last], 1-based and inclusive")
    return None, (lines[0], lines[1])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def exit_code(response: dict) -> int:
    """`dcode complete`'s exit status: 0, 3 for model_unavailable, 2 for any other error."""
    error = response.get("error")
    if not error:
        return 0
    return 3 if error.get("code") == "model_unavailable" else 2


def serve_stdio(stdin: IO[str], stdout: IO[str], flags: dict[str, Any], jsonl: bool,
                write: Callable[[str], None] | None = None) -> int:
    """One request (or, with jsonl, one per line) in; one response per request out, flushed."""
    completer = Completer(flags)
    emit = write or (lambda text: (stdout.write(text), stdout.flush()))
    if not jsonl:
        response = completer.answer_line(stdin.read())
        emit(json.dumps(response) + "\n")
        return exit_code(response)
    for line in stdin:  # one response per line, a blank one included: editors pair them up by order
        emit(json.dumps(completer.answer_line(line)) + "\n")
    return 0
