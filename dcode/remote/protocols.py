"""The wire formats dcode speaks to a model server, each turning a hole into a request and the
reply back into text (with per-token confidences where the server gives them):

* `dcode`: `dcode serve`'s /infill and /refine (token confidences, in-place refinement);
* `llamacpp`: llama.cpp's /infill (confidences from `n_probs` when it sends them);
* `openai`: /v1/completions with `suffix` (confidences from `logprobs` when sent);
* `openai-chat`: /v1/chat/completions for instruct models: the fenced-code prompt dcode builds for
  Dream/LLaDA instructions, with the hole marked; the reply's code block is cut back to the hole.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dcode.diffusion.sampler import DecodeOptions
from dcode.errors import InputError, ModelError, NoEditError
from dcode.remote.fields import request_fields
from dcode.remote.http import HttpClient, expect_json
from dcode.remote.pieces import carry

HOLE = "<HOLE>"
FENCED = re.compile(r"```[^\n]*\n(.*?)\n?```", re.DOTALL)


@dataclass
class Hole:
    """What to fill: the text on both sides, the model-visible path, context files, options."""

    prefix: str
    suffix: str
    path: str | None
    context: Sequence[tuple[str, str]]
    options: DecodeOptions
    instruction: str | None = None


@dataclass
class Answer:
    """A server's fill: text, its tokens and their confidences when the server gave them."""

    text: str
    pieces: list[str] | None
    confidences: list[float] | None
    forward_passes: int
    wall_s: float


def malformed(where: str, what: str) -> ModelError:
    return ModelError(f"{where}: malformed reply ({what})")


def _text_field(body: dict, where: str, *keys: str | int) -> str:
    value: Any = body
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise malformed(where, f"no {'.'.join(map(str, keys))}") from None
    if not isinstance(value, str):
        raise malformed(where, f"{'.'.join(map(str, keys))} is not a string")
    return value


@dataclass
class Protocol:
    """Base: what every adapter has. `refines` says whether the server revises a draft in place."""

    client: HttpClient
    model: str | None = None  # the model id an OpenAI server is asked for
    name = "base"
    refines = False
    confidences = False

    def infill(self, hole: Hole) -> Answer:
        raise NotImplementedError

    def count_tokens(self, text: str) -> int | None:
        """How many of the model's tokens `text` is, as the server counts them; None when it
        cannot say (OpenAI's API has no tokenizer endpoint)."""
        return None

    def post(self, path: str, body: dict) -> tuple[dict, float]:
        start = time.perf_counter()
        reply = expect_json(self.client.post(path, body), path, self.client.endpoint)
        return reply, time.perf_counter() - start


class DcodeProtocol(Protocol):
    """`dcode serve`: the client gathers context locally and the server uses it verbatim."""

    name = "dcode"
    refines = True
    confidences = True

    def count_tokens(self, text: str) -> int | None:
        return tokenize_count(self.client, text)

    def request(self, hole: Hole) -> dict:
        body = {
            "input_prefix": hole.prefix, "input_suffix": hole.suffix, "filename": hole.path or "untitled",
            "input_extra": [{"filename": p, "text": t} for p, t in hole.context], "gather_context": False,
            **request_fields(hole.options),
        }
        if hole.options.deadline_s is not None:
            body["deadline_ms"] = hole.options.deadline_s * 1000
        if hole.instruction is not None:
            body["instruction"] = hole.instruction
        return body

    def infill(self, hole: Hole) -> Answer:
        return self.answer(*self.post("/infill", self.request(hole)), "/infill")

    def refine(self, hole: Hole, pieces: list[str], confidences: list[float], remask: int | None,
               lines: tuple[int, int] | None) -> Answer:
        """The draft goes as the text of its tokens (the server's own pieces, from its answer), which
        the server encodes back to its ids: a new process has no ids of the server's to send."""
        body = {**self.request(hole), "draft": {"pieces": pieces, "confidences": confidences}}
        if lines is not None:
            body["lines"] = list(lines)
        else:
            body["remask"] = remask if remask is not None else max(1, len(pieces) // 4)
        return self.answer(*self.post("/refine", body), "/refine")

    def answer(self, body: dict, wall_s: float, path: str) -> Answer:
        where = self.client.endpoint + path
        text = _text_field(body, where, "content")
        extra = body.get("dcode")
        if not isinstance(extra, dict):
            raise malformed(where, "no dcode object: is this `dcode serve`? set protocol = \"llamacpp\"")
        spans, conf = extra.get("spans"), extra.get("confidences")
        try:
            spans = [(int(a), int(b)) for a, b in spans]
            conf = [float(c) for c in conf]
        except (TypeError, ValueError):
            raise malformed(where, "dcode.spans / dcode.confidences") from None
        if len(spans) != len(conf):
            raise malformed(where, "dcode.spans and dcode.confidences differ in length")
        pieces, conf = carry(text, spans, conf)
        passes = extra.get("forward_passes")
        return Answer(text, pieces, conf, passes if isinstance(passes, int) else 0, wall_s)


class LlamaCppProtocol(Protocol):
    name = "llamacpp"

    def count_tokens(self, text: str) -> int | None:
        return tokenize_count(self.client, text)

    def infill(self, hole: Hole) -> Answer:
        opts = hole.options
        body = {
            "input_prefix": hole.prefix, "input_suffix": hole.suffix,
            "input_extra": [{"filename": p, "text": t} for p, t in hole.context],
            "n_predict": opts.max_tokens, "temperature": opts.temperature, "top_p": opts.top_p, "seed": opts.seed,
            "n_probs": 1, "stream": False,
        }
        reply, wall = self.post("/infill", body)
        where = self.client.endpoint + "/infill"
        text = _text_field(reply, where, "content")
        pieces, conf = _llamacpp_probs(reply.get("completion_probabilities"), text)
        passes = reply.get("tokens_predicted")
        return Answer(text, pieces, conf, passes if isinstance(passes, int) else 0, wall)


def tokenize_count(client: HttpClient, text: str) -> int | None:
    """The length of llama.cpp's (and `dcode serve`'s) `/tokenize` answer for `text`; None when the
    server has no such route or answers something else."""
    reply = client.post("/tokenize", {"content": text})
    tokens = reply.body.get("tokens") if reply.status == 200 and isinstance(reply.body, dict) else None
    return len(tokens) if isinstance(tokens, list) else None


def _llamacpp_probs(items: Any, text: str) -> tuple[list[str] | None, list[float] | None]:
    """Pieces and probabilities from llama.cpp's `completion_probabilities` (older servers send
    `content` + `probs`, newer `token` + `logprob`); None when absent or not the text's tokens."""
    if not isinstance(items, list) or not items:
        return None, None
    pieces, conf = [], []
    for item in items:
        if not isinstance(item, dict):
            return None, None
        piece = item.get("token", item.get("content"))
        if isinstance(item.get("logprob"), (int, float)):
            prob = math.exp(item["logprob"])
        elif isinstance(item.get("probs"), list) and item["probs"] and isinstance(item["probs"][0], dict):
            prob = item["probs"][0].get("prob")
        else:
            prob = None
        if not isinstance(piece, str) or not isinstance(prob, (int, float)):
            return None, None
        pieces.append(piece)
        conf.append(float(prob))
    return (pieces, conf) if "".join(pieces) == text else (None, None)


class OpenAICompletions(Protocol):
    """/v1/completions with `suffix` (fill-in-the-middle); the context files are not sent."""

    name = "openai"

    def infill(self, hole: Hole) -> Answer:
        opts = hole.options
        body = {
            "model": self.model, "prompt": hole.prefix, "suffix": hole.suffix, "max_tokens": opts.max_tokens,
            "temperature": opts.temperature, "top_p": opts.top_p, "seed": opts.seed, "logprobs": 1,
        }
        try:
            reply, wall = self.post("/v1/completions", body)
        except InputError as err:
            if "suffix" not in str(err):
                raise
            # vLLM and SGLang refuse `suffix`; their instruct models answer through chat.
            raise InputError(f"{err} (this server cannot fill a hole through completions: "
                             "set protocol = \"openai-chat\" or DCODE_PROTOCOL=openai-chat)") from None
        where = self.client.endpoint + "/v1/completions"
        text = _text_field(reply, where, "choices", 0, "text")
        logprobs = reply["choices"][0].get("logprobs")
        pieces, conf = None, None
        if isinstance(logprobs, dict):
            tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
            if (isinstance(tokens, list) and isinstance(values, list) and len(tokens) == len(values)
                    and all(isinstance(t, str) for t in tokens) and "".join(tokens) == text
                    and all(isinstance(v, (int, float)) for v in values)):
                pieces, conf = tokens, [math.exp(v) for v in values]
        return Answer(text, pieces, conf, _usage_tokens(reply), wall)


def _usage_tokens(reply: dict) -> int:
    usage = reply.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) else 0


class OpenAIChat(Protocol):
    """An instruct model behind /v1/chat/completions: it is shown the file with the hole marked
    and asked for the whole file back; the hole is what lies between the unchanged ends."""

    name = "openai-chat"

    def infill(self, hole: Hole) -> Answer:
        from dcode.diffusion.engine import instruction_message

        ask = hole.instruction or f"Write the code that replaces {HOLE}."
        message = (instruction_message(ask, hole.path, hole.context)
                   + f"\n\n{hole.path or 'The file'}, where {HOLE} marks the code to write (change nothing else):\n"
                   + f"```\n{hole.prefix}{HOLE}{hole.suffix}\n```")
        body = {"model": self.model, "messages": [{"role": "user", "content": message}],
                "max_tokens": hole.options.max_tokens + _rough_tokens(hole.prefix + hole.suffix),
                "temperature": hole.options.temperature, "top_p": hole.options.top_p, "seed": hole.options.seed}
        reply, wall = self.post("/v1/chat/completions", body)
        content = _text_field(reply, self.client.endpoint + "/v1/chat/completions", "choices", 0, "message", "content")
        return Answer(hole_in_reply(content, hole.prefix, hole.suffix), None, None, _usage_tokens(reply), wall)


def _rough_tokens(text: str) -> int:
    # The reply repeats the file around the hole; leave room for it (about 3 characters a token).
    return len(text) // 3 + 16


def hole_in_reply(reply: str, prefix: str, suffix: str) -> str:
    """The text the reply's first code block has between the file's prefix and suffix. The
    block's closing fence takes the file's last newline, so the suffix is matched without
    trailing whitespace."""
    block = FENCED.search(reply)
    if block is None:
        raise NoEditError("the model's chat reply holds no code block")
    code = block.group(1)
    if HOLE in code or not code.startswith(prefix):
        raise NoEditError("the model's chat reply did not keep the code before the hole")
    body = code[len(prefix):].rstrip()
    tail = suffix.rstrip()
    if not body.endswith(tail):
        raise NoEditError("the model's chat reply did not keep the code after the hole")
    return body[: len(body) - len(tail)]


ADAPTERS: dict[str, type[Protocol]] = {
    cls.name: cls for cls in (DcodeProtocol, LlamaCppProtocol, OpenAICompletions, OpenAIChat)
}
