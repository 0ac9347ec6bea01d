"""llama.cpp's request and response details beyond the shared contract (dcode.complete)."""

from __future__ import annotations

from typing import Any

from dcode.errors import InputError

# Fields llama.cpp honours that would change the answer and that dcode cannot honour: refused
# with a clear 400 rather than silently ignored. (Sampler knobs such as top_k, or llama.vim's
# `samplers` list, only tune a left-to-right sampler and are ignored.)
# Each is named as the refusal says it, and what the client can use instead, if anything.
UNSUPPORTED = {
    "n_probs": ("n_probs (token probabilities)", "each token's confidence is in the answer's `dcode.confidences`"),
    "grammar": ("grammar", None),
    "json_schema": ("json_schema", None),
    "lora": ("lora (per-request adapters)", None),
}


def check_request(data: Any) -> None:
    """Refuse what the shared contract would ignore but the client depends on."""
    if not isinstance(data, dict):
        return  # the contract's parser says what is wrong
    for name, (what, instead) in UNSUPPORTED.items():
        if data.get(name):
            raise InputError(f"{what} is not supported by dcode serve" + (f"; {instead}" if instead else ""))
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InputError("stream must be true or false")
    fields = data.get("response_fields")
    if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
        raise InputError("response_fields must be a list of strings")


def select_fields(response: dict, paths: list[str] | None) -> dict:
    """llama.cpp's `response_fields`: only the named fields, nested ones by `a/b` paths, under
    their path as given (llama.vim reads `timings/prompt_n`); missing paths are left out."""
    if not paths or "error" in response:
        return response
    selected: dict[str, Any] = {}
    for path in paths:
        value: Any = response
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            selected[path] = value
    return selected


def partial_chunk(text: str) -> dict:
    """A streamed /infill or /completion chunk: text that will not change."""
    return {"content": text, "stop": False, "index": 0}


def final_chunk(answer: dict, rest: str) -> dict:
    """The last chunk: what was not streamed yet, with the whole answer's other fields."""
    generation = answer["generation_settings"]
    return {**answer, "content": rest, "stop": True, "index": 0,
            "generation_settings": {**generation, "stream": True}}
