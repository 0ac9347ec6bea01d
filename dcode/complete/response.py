"""The answer to an editor's request: llama.cpp's response fields and dcode's own, the contract's
errors, and `dcode complete`'s exit status (see `dcode.complete`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # they import torch: only when a model runs
    from dcode.complete.request import InfillRequest
    from dcode.diffusion.engine import Completion, Prompt
    from dcode.diffusion.sampler import DecodeOptions, HoleState
    from dcode.model.loader import LoadedModel


def error_response(code: str, message: str, model_name: str | None = None) -> dict:
    return {"content": "", "tokens_predicted": 0, "model": model_name, "error": {"code": code, "message": message}}


def apply_stop(text: str, stops: list[str]) -> tuple[str, str]:
    """`text` cut before its earliest stop sequence, and that sequence ("" when none occurs)."""
    found = [(i, s) for s in stops if (i := text.find(s)) >= 0]
    if not found:
        return text, ""
    cut, word = min(found)
    return text[:cut], word


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


def generation_settings(model: LoadedModel, options: DecodeOptions, stops: list[str], stream: bool) -> dict:
    """llama.cpp's `generation_settings`: what a request was (or, in /props, would be) decoded with."""
    return {
        "n_ctx": model.config.max_seq_len, "n_predict": options.max_tokens, "model": model.name,
        "seed": options.seed, "temperature": options.temperature, "top_p": options.top_p,
        "threshold": options.threshold, "tokens_per_step": options.tokens_per_step, "steps": options.steps,
        "block_size": options.block_size, "stop": stops, "stream": stream,
        "t_max_predict_ms": round(options.deadline_s * 1000) if options.deadline_s else 0,
        "t_max_prompt_ms": -1,  # the prompt is read within each pass: there is no separate phase to limit
    }


@dataclass
class PromptTime:
    """Where a request's prompt time went (llama.cpp's `prompt_ms`): gathering the context and
    tokenizing the prompt before the passes, and computing the context's keys/values, which a
    causal-context model (dcode-small) does once, in its first pass."""

    prepare_s: float = 0.0
    encode_s: float = 0.0  # inside the passes' wall time, so it comes out of `predicted_ms`


def infill_response(model: LoadedModel, request: InfillRequest, options: DecodeOptions, result: Completion | None,
                    prompt_n: int, truncated: bool, cached: int, prompt_time: PromptTime | None = None) -> dict:
    """The whole answer; `result` None for a warm-up that generated nothing."""
    from dcode.diffusion.engine import has_chat_template

    tok = model.tokenizer
    text, word = apply_stop(result.text if result else "", request.stops)
    ids = result.token_ids if result else []
    spans = [(s, min(e, len(text))) for s, e in tok.char_spans(ids) if s < len(text)]
    ids, conf = ids[: len(spans)], (result.confidences[: len(spans)] if result else [])
    passes = result.stats.forward_passes if result else 0
    prompt_time = prompt_time or PromptTime()
    wall_ms = result.stats.wall_s * 1000 if result else 0.0
    limited = result is not None and not word and len(result.token_ids) >= options.max_tokens
    return {
        "content": text, "tokens_predicted": len(ids), "tokens_evaluated": prompt_n,
        "tokens_cached": cached, "truncated": truncated, "stop": True,
        "stop_type": "word" if word else "limit" if limited else "eos", "stopping_word": word,
        "generation_settings": generation_settings(model, options, request.stops, False),
        "timings": timings(prompt_n, len(ids), max(0.0, wall_ms - prompt_time.encode_s * 1000), passes,
                           (prompt_time.prepare_s + prompt_time.encode_s) * 1000),
        "model": model.name,
        "truncated_by_deadline": bool(result and result.deadline_hit),
        "dcode": {"token_ids": ids, "spans": [list(s) for s in spans],
                  "confidences": [round(c, 4) for c in conf], "forward_passes": passes,
                  "chat_template": has_chat_template(model)},
    }


def timings(prompt_n: int, predicted_n: int, predicted_ms: float, forward_passes: int, prompt_ms: float = 0.0) -> dict:
    """llama.cpp's timings: `prompt_ms` as `PromptTime` measures it (0 when it was not measured:
    a remote model's), `predicted_ms` the denoising passes."""
    return {
        "prompt_n": prompt_n, "prompt_ms": round(prompt_ms, 3),
        "prompt_per_token_ms": round(prompt_ms / prompt_n, 3) if prompt_n else 0.0,
        "prompt_per_second": round(prompt_n * 1000 / prompt_ms, 3) if prompt_ms else 0.0,
        "predicted_n": predicted_n, "predicted_ms": round(predicted_ms, 3),
        "predicted_per_token_ms": round(predicted_ms / predicted_n, 3) if predicted_n else 0.0,
        "predicted_per_second": round(predicted_n * 1000 / predicted_ms, 3) if predicted_ms else 0.0,
        "forward_passes": forward_passes,
    }


def exit_code(response: dict) -> int:
    """`dcode complete`'s exit status: 0, 3 for model_unavailable, 2 for any other error."""
    error = response.get("error")
    if not error:
        return 0
    return 3 if error.get("code") == "model_unavailable" else 2

