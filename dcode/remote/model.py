"""A model on a server, usable wherever the workflow takes a loaded model: it has a name, a
tokenizer (`PieceTokenizer`: the server's token pieces, no vocabulary needed), a context length,
and generates with `infill_stream` / `refine_stream`, which yield the final Completion (a server
sends no pass-by-pass states).

`connect` detects the protocol unless `protocol` is set: `/props` with a `dcode` object is
`dcode serve`, `/props` without it is llama.cpp, else `/v1/models` is an OpenAI server (text
completions with `suffix`; `openai-chat` must be asked for).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from dcode.diffusion.engine import Completion, line_bounds
from dcode.diffusion.sampler import DecodeOptions, DecodeStats
from dcode.edit.proposal import line_count
from dcode.errors import InputError, ModelError
from dcode.remote.http import HttpClient, Reply, error_message
from dcode.remote.pieces import PieceTokenizer, carry, piece_text
from dcode.remote.protocols import ADAPTERS, Answer, DcodeProtocol, Hole, Protocol
from dcode.settings import Settings

DEFAULT_CONTEXT = 8192  # tokens, when the server does not say
MAX_COUNTS_KEPT = 512  # token counts remembered (context assembly counts the same texts again)
ESTIMATED_COUNTS = "the server does not count tokens: the context was fitted to its window by an estimate"
NO_CONFIDENCES = "no confidences from this server: no token is marked uncertain"
NO_IN_PLACE = "(the server has no in-place refinement)"


@dataclass
class RemoteConfig:
    max_seq_len: int


@dataclass
class RemoteCompletion(Completion):
    notes: list[str] = field(default_factory=list)  # what the user should be told about it
    regenerated: tuple[int, int] | None = None  # draft lines regenerated as a fresh hole


@dataclass
class RemoteModel:
    protocol: Protocol
    name: str
    config: RemoteConfig
    chat_template: bool  # an instruction goes to the model as words, not as a code comment
    tokenizer: PieceTokenizer = field(default_factory=PieceTokenizer)
    device: str = "remote"
    counts_exactly: bool = True  # token counts are the server's (False once it cannot give them)
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    def count_tokens(self, text: str) -> int:
        """`text`'s length in the server model's tokens, as a local model counts its own: context is
        fitted to the server's window exactly as it would be to the same model's here. A server
        that cannot count (OpenAI's API) gets the local split's estimate."""
        if text not in self._counts:
            counted = self.protocol.count_tokens(text) if self.counts_exactly else None
            self.counts_exactly = counted is not None
            if len(self._counts) >= MAX_COUNTS_KEPT:
                self._counts.clear()
            self._counts[text] = counted if counted is not None else len(self.tokenizer.encode(text))
        return self._counts[text]

    def facts(self) -> dict[str, object]:
        """What `dcode info` and the shell's `info` say about it."""
        return {
            "model": self.name, "endpoint": self.protocol.client.endpoint, "protocol": self.protocol.name,
            "context_tokens": self.config.max_seq_len, "confidences": self.protocol.confidences,
            "refine": "in place" if self.protocol.refines else "regenerates the chosen lines",
        }

    def infill_stream(self, prefix: str, suffix: str, *, path: str | None = None,
                      context: Sequence[tuple[str, str]] = (), options: DecodeOptions | None = None,
                      instruction: str | None = None) -> Iterator[Completion]:
        hole = Hole(prefix, suffix, path, context, options or DecodeOptions(), instruction)
        yield self.completion(self.protocol.infill(hole))

    def refine_stream(self, prefix: str, suffix: str, draft: Completion, *, remask: int | None = None,
                      lines: tuple[int, int] | None = None, path: str | None = None,
                      context: Sequence[tuple[str, str]] = (), options: DecodeOptions | None = None,
                      instruction: str | None = None) -> Iterator[Completion]:
        """In place on `dcode serve`; elsewhere the chosen lines (all of them without `lines`)
        are regenerated as a fresh hole between the rest of the draft."""
        if not draft.token_ids:
            raise InputError("nothing to refine: the proposal is empty")
        options = options or DecodeOptions()
        if isinstance(self.protocol, DcodeProtocol):
            pieces = [piece_text(i) for i in draft.token_ids]
            hole = Hole(prefix, suffix, path, context, options, instruction)
            yield self.completion(self.protocol.refine(hole, pieces, list(draft.confidences), remask, lines))
            return
        first, last = lines or (1, line_count(draft.text))
        lo, hi = line_bounds(draft.text, first, last)
        before, after = draft.text[:lo], draft.text[hi:]
        fresh = self.protocol.infill(Hole(prefix + before, after + suffix, path, context, options, instruction))
        middle = self.completion(fresh)
        spans = self.tokenizer.char_spans(draft.token_ids)
        head = carry(before, [(a, min(b, lo)) for a, b in spans if a < lo], draft.confidences)
        kept = [(a, b, c) for (a, b), c in zip(spans, draft.confidences) if b > hi]
        tail = carry(after, [(max(a, hi) - hi, b - hi) for a, b, _ in kept], [c for *_, c in kept])
        ids = self.tokenizer.from_pieces(head[0]) + middle.token_ids + self.tokenizer.from_pieces(tail[0])
        yield RemoteCompletion(before + middle.text + after, ids, head[1] + middle.confidences + tail[1],
                               middle.stats, notes=middle.notes, regenerated=(first, last))

    def completion(self, answer: Answer) -> RemoteCompletion:
        if answer.pieces is not None and answer.confidences is not None:
            ids, conf, notes = self.tokenizer.from_pieces(answer.pieces), answer.confidences, []
        else:
            ids = self.tokenizer.encode(answer.text)
            conf, notes = [1.0] * len(ids), [NO_CONFIDENCES]
        stats = DecodeStats(forward_passes=answer.forward_passes, tokens=len(ids), wall_s=answer.wall_s)
        return RemoteCompletion(answer.text, ids, conf, stats, notes=notes)


def regenerated_note(first: int, last: int) -> str:
    return f"regenerated lines {first}-{last} {NO_IN_PLACE}"


# --------------------------------------------------------------------------------------------
# Connecting
# --------------------------------------------------------------------------------------------


def model_flag_names_remote(settings: Settings, flags: dict) -> None:
    """With an endpoint nothing is loaded here: a `--model` flag names the server's model."""
    if settings.endpoint and flags.get("model") and not flags.get("remote_model"):
        settings.remote_model = flags["model"]


def connect(settings: Settings) -> RemoteModel:
    """The model behind `settings.endpoint`, its protocol detected unless configured."""
    assert settings.endpoint is not None
    client = HttpClient(settings.endpoint, settings.api_key, settings.timeout)
    kind = settings.protocol
    props = _props(client) if kind in (None, "dcode", "llamacpp") else None
    if kind is None and props is not None:
        kind = "dcode" if isinstance(props.get("dcode"), dict) else "llamacpp"
    if kind == "dcode":
        return _dcode_model(client, props)
    if kind == "llamacpp":
        settings_ctx = (props or {}).get("default_generation_settings")
        n_ctx = settings_ctx.get("n_ctx") if isinstance(settings_ctx, dict) else None
        name = PurePath(str((props or {}).get("model_path") or "llama.cpp")).name
        return RemoteModel(ADAPTERS["llamacpp"](client), name, RemoteConfig(_length(n_ctx)), False)
    models = _models(client)
    if models is None:
        raise ModelError(f"{settings.endpoint} answers neither /props (dcode serve, llama.cpp) nor /v1/models "
                         "(OpenAI); is it a model server? (`protocol` names the protocol)")
    name, length = _pick_model(models, settings.remote_model, settings.endpoint)
    kind = kind or "openai"
    return RemoteModel(ADAPTERS[kind](client, name), name, RemoteConfig(_length(length)), kind == "openai-chat")


def _dcode_model(client: HttpClient, props: dict | None) -> RemoteModel:
    facts = (props or {}).get("dcode")
    if not isinstance(facts, dict):
        raise ModelError(f"{client.endpoint} is not `dcode serve` (its /props has no dcode object)")
    name = facts.get("model") if isinstance(facts.get("model"), str) else "dcode"
    return RemoteModel(DcodeProtocol(client), name, RemoteConfig(_length(facts.get("max_seq_len"))),
                       bool(facts.get("chat_template")))


def _length(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else DEFAULT_CONTEXT


def _optional_json(reply: Reply, path: str, endpoint: str) -> dict | None:
    """A 200 JSON object, None when the server has no such route; an auth refusal is an error."""
    if reply.status in (401, 403):
        raise ModelError(f"{endpoint}{path}: HTTP {reply.status}, the server refused the API key "
                         f"(set DCODE_API_KEY): {error_message(reply)}")
    return reply.body if reply.status == 200 and isinstance(reply.body, dict) else None


def _props(client: HttpClient) -> dict | None:
    return _optional_json(client.get("/props"), "/props", client.endpoint)


def _models(client: HttpClient) -> list[dict] | None:
    body = _optional_json(client.get("/v1/models"), "/v1/models", client.endpoint)
    data = body.get("data") if body is not None else None
    if not isinstance(data, list):
        return None
    return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


def _pick_model(models: list[dict], wanted: str | None, endpoint: str) -> tuple[str, object]:
    """(model id, its context length if the server says) for `wanted`, else the first model."""
    if not models:
        raise ModelError(f"{endpoint}/v1/models lists no model")
    for model in models:
        if wanted is None or model["id"] == wanted:
            return model["id"], model.get("max_model_len")
    names = ", ".join(m["id"] for m in models[:10])
    raise InputError(f"{endpoint} does not serve {wanted!r} (it serves: {names})")
