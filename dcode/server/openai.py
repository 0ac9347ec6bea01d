"""OpenAI's /v1/completions and /v1/models, mapped onto the editor contract."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from dcode.errors import InputError

# Accepted and passed on to the contract (types are checked there).
PASSED = ("temperature", "top_p", "stop")
UNSUPPORTED = ("logprobs", "echo", "best_of", "logit_bias")
CREATED = int(time.time())  # the model "exists" since the server started


@dataclass
class Choice:
    index: int  # OpenAI's order: prompt by prompt, n choices each
    prompt_index: int
    request: dict  # in the editor contract's terms


def choices(data: Any) -> list[Choice]:
    """One contract request per choice: every prompt of a list, `n` times each (seeds differ so
    that sampled choices differ). InputError on what we cannot serve."""
    if not isinstance(data, dict):
        raise InputError("the request must be a JSON object")
    prompts = data.get("prompt", "")
    prompts = prompts if isinstance(prompts, list) else [prompts]
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise InputError("prompt must be a string or a list of strings (token-id prompts are not supported)")
    suffix = data.get("suffix") or ""
    if not isinstance(suffix, str):
        raise InputError("suffix must be a string")
    n = data.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
        raise InputError("n must be a whole number from 1 to 16")
    for name in UNSUPPORTED:
        if data.get(name) not in (None, False, 0, 1) or (name == "echo" and data.get(name)):
            raise InputError(f"{name} is not supported by dcode serve")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InputError("stream must be true or false")
    base: dict[str, Any] = {"input_suffix": suffix}
    max_tokens = data.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InputError("max_tokens must be a positive integer")
        base["n_predict"] = max_tokens
    base.update({name: data[name] for name in PASSED if data.get(name) is not None})
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError("seed must be a whole number")
    out = []
    for p, prompt in enumerate(prompts):
        for j in range(n):
            request = {**base, "input_prefix": prompt}
            if seed is not None or j:
                request["seed"] = (seed or 0) + j
            out.append(Choice(len(out), p, request))
    return out


def finish_reason(answer: dict) -> str:
    return "length" if answer.get("stop_type") == "limit" else "stop"


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def response(answers: list[tuple[Choice, dict]], model: str | None) -> dict:
    per_prompt = {c.prompt_index: int(a.get("tokens_evaluated", 0)) for c, a in answers}  # n choices read it once
    prompt_tokens = sum(per_prompt.values())
    completion_tokens = sum(int(a.get("tokens_predicted", 0)) for _, a in answers)
    return {
        "id": completion_id(), "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"text": a["content"], "index": c.index, "finish_reason": finish_reason(a), "logprobs": None}
                    for c, a in answers],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def chunk(cid: str, created: int, model: str | None, index: int, text: str, finish: str | None) -> dict:
    return {"id": cid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": text, "index": index, "finish_reason": finish, "logprobs": None}]}


def model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": CREATED, "owned_by": "dcode"}


def models(name: str) -> dict:
    return {"object": "list", "data": [model_object(name)]}


def unknown_model(data: Any, served: str) -> str | None:
    """The `model` a /v1/completions request names when this server does not run it (OpenAI
    answers 404 for it rather than quietly using another); None when it names this one or none."""
    name = data.get("model") if isinstance(data, dict) else None
    return name if name is not None and name != served else None


def not_found(name: Any, served: str) -> dict:
    """OpenAI's error for a model it does not have (404, code `model_not_found`; the client reads
    error.message)."""
    return {"error": {"code": "model_not_found", "message": f"the model {name!r} does not exist here; this server "
                      f"runs {served!r}", "type": "invalid_request_error", "param": "model"}}
