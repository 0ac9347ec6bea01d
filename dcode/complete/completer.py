"""`Completer`: one model, loaded on first use and kept warm, answering the editor contract (see
`dcode.complete`) for `dcode complete` in-process and for every model endpoint of `dcode serve`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcode.complete.request import (
    MAX_REQUEST_BYTES, REMASK_CONFIDENCE, InfillRequest, parse_draft, parse_request, refine_target,
)
from dcode.complete.response import PromptTime, committed_text, error_response, generation_settings, infill_response
from dcode.errors import DcodeError, InputError, ModelError, out_of_memory

if TYPE_CHECKING:  # both import torch: only when a model runs
    from dcode.diffusion.engine import Completion, Prompt
    from dcode.diffusion.sampler import DecodeOptions


def repo_context(filename: str, prefix: str, suffix: str, model, budget: int) -> tuple[str, list[tuple[str, str]]]:
    """The buffer's path as the model should see it (repository-relative, as in training and
    `dcode fill`) and context chunks from the repository index, when `filename` lies inside a
    project."""
    from dcode.context.gather import gather_context
    from dcode.context.index import RepoIndex, find_repo_root
    from dcode.edit.targets import target_in_text
    from dcode.workflow import generator

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
    result = gather_context(target, index, budget, generator(model).count_tokens)  # a server's model: its tokens
    return rel, [(c.path, c.text) for c in result.chunks]


def tokens_cached(model) -> int:
    """Context tokens whose keys/values the last pass took from the previous request's (llama.cpp's
    `cache_prompt`). Only a causal-context model has them: under bidirectional attention a shared
    prefix's keys/values change with everything after it, so no reuse would be exact."""
    return model.prefix_cache.reused if model.config.causal_context else 0


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
            from dcode.model.threads import use_threads

            use_threads(self.settings.threads)
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
            if (message := out_of_memory(err)) is not None:  # the model does not fit: as the CLI says it
                return error_response("model_unavailable", message, self.model_name)
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
                "default_generation_settings": generation_settings(model, self.settings.decode_options(), [], False),
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
            return infill_response(model, request, options, None, 0, False, 0)
        started = time.perf_counter()
        path, context = self._where(request, model, options)
        kwargs = dict(path=path, context=context, instruction=request.instruction)
        prompt = build_prompt(model, request.prefix, request.suffix, reserve=options.max_tokens, **kwargs)
        prompt_time, encoded = PromptTime(prepare_s=time.perf_counter() - started), model.prefix_cache.compute_s
        cached = None
        for item in infill_stream(model, request.prefix, request.suffix, options=options, **kwargs):
            cached = cached if cached is not None else tokens_cached(model)  # read by the first pass
            if isinstance(item, Completion):
                prompt_time.encode_s = model.prefix_cache.compute_s - encoded
                return infill_response(model, request, options, item, *self._prompt_size(model, request, prompt),
                                       cached or 0, prompt_time)
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
        target = refine_target(data)
        draft = self._draft(data.get("draft"), model, target.positions)
        remask = target.remask
        if target.positions:  # the marked tokens (one piece may have become several) are the k to re-mask
            remask = sum(c == REMASK_CONFIDENCE for c in draft.confidences)
        options = self._options(request)
        started = time.perf_counter()
        path, context = self._where(request, model, options)
        prompt = build_prompt(model, request.prefix, request.suffix, path=path, context=context,
                              reserve=len(draft.token_ids) + options.max_tokens, instruction=request.instruction)
        prompt_time, encoded = PromptTime(prepare_s=time.perf_counter() - started), model.prefix_cache.compute_s
        result = refine(model, request.prefix, request.suffix, draft, remask=remask, lines=target.lines, path=path,
                        context=context, options=options, instruction=request.instruction)
        prompt_time.encode_s = model.prefix_cache.compute_s - encoded
        return infill_response(model, request, options, result, *self._prompt_size(model, request, prompt),
                               tokens_cached(model), prompt_time)

    def _draft(self, draft: Any, model, positions: list[int] | None) -> Completion:
        from dcode.diffusion.engine import Completion
        from dcode.diffusion.sampler import DecodeStats

        ids, conf = parse_draft(draft, model.tokenizer.encode, model.tokenizer.vocab_size, positions)
        return Completion(model.tokenizer.decode(ids), ids, conf, DecodeStats())

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

