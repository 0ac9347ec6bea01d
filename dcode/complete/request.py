"""Parsing and checking an editor's /infill or /refine request (see `dcode.complete`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dcode.errors import InputError
from dcode.remote.fields import NUMERIC_FIELDS

MAX_REQUEST_BYTES = 4 * 2**20
NON_NEGATIVE = ("n_predict", "min_tokens", "initial_tokens")
POSITIVE = ("max_lines", "best_of")


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
            if field_name in POSITIVE and value < 1:
                raise InputError(f"{field_name} must be at least 1")
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


# A confidence below any the sampler gives: the draft tokens named in `positions` re-mask first.
REMASK_CONFIDENCE = -1.0


@dataclass
class RefineTarget:
    """What /refine re-masks: the `remask` least confident tokens, the draft's `lines`, or the
    draft tokens at `positions` (indices into the draft as sent)."""

    remask: int | None = None
    lines: tuple[int, int] | None = None
    positions: list[int] | None = None


def refine_target(data: dict) -> RefineTarget:
    given = [name for name in ("remask", "lines", "positions") if data.get(name) is not None]
    if len(given) != 1:
        raise InputError("send exactly one of remask (a token count), lines ([first, last]) or positions ([index, ...])")
    remask, lines, positions = data.get("remask"), data.get("lines"), data.get("positions")
    if remask is not None:
        if not is_int(remask) or remask < 1:
            raise InputError("remask must be a positive whole number")
        return RefineTarget(remask=remask)
    if positions is not None:
        if not (isinstance(positions, list) and positions and all(is_int(i) and i >= 0 for i in positions)):
            raise InputError("positions must be a non-empty list of draft token indices")
        return RefineTarget(positions=sorted(set(positions)))
    if not (isinstance(lines, list) and len(lines) == 2 and all(is_int(n) for n in lines)):
        raise InputError("lines must be [first, last], 1-based and inclusive")
    return RefineTarget(lines=(lines[0], lines[1]))


def mark_positions(confidences: list[float], positions: list[int]) -> list[float]:
    """The draft's confidences with the tokens at `positions` made the least confident of all, so
    that re-masking len(positions) tokens takes exactly those (and token healing carries the mark
    to whatever tokens re-cover them)."""
    if positions[-1] >= len(confidences):
        raise InputError(f"positions go up to {positions[-1]} but the draft has {len(confidences)} tokens")
    marked = list(confidences)
    for i in positions:
        marked[i] = REMASK_CONFIDENCE
    return marked


def parse_draft(draft: Any, encode: Callable[[str], list[int]], vocab_size: int,
                positions: list[int] | None = None) -> tuple[list[int], list[float]]:
    """/refine's draft as token ids and their confidences: `token_ids` as sent, or `pieces`, the
    text of each token, encoded here (a client in another process keeps only the text of the
    server's tokens, not their ids); the items at `positions` are marked to be re-masked."""
    if not isinstance(draft, dict):
        raise InputError("draft must be an object {token_ids or pieces, confidences}")
    conf = draft.get("confidences")
    if not isinstance(conf, list) or not all(is_number(c) for c in conf):
        raise InputError("draft.confidences must be a list of numbers")
    field_name = "pieces" if "pieces" in draft else "token_ids"
    items = draft.get(field_name)
    if not isinstance(items, list) or len(items) != len(conf):
        raise InputError(f"draft has {len(items) if isinstance(items, list) else 'no'} {field_name} "
                         f"but {len(conf)} confidences")
    conf = mark_positions([float(c) for c in conf], positions) if positions else [float(c) for c in conf]
    ids, conf = piece_ids(items, conf, encode) if field_name == "pieces" else (items, conf)
    if not ids or not all(is_int(i) and 0 <= i < vocab_size for i in ids):
        raise InputError(f"draft.{field_name} must be non-empty and give token ids below {vocab_size}")
    return ids, conf


def piece_ids(pieces: list[Any], confidences: list[float], encode: Callable[[str], list[int]]
              ) -> tuple[list[int], list[float]]:
    """Each piece's token ids, every one with the piece's confidence: a piece that is one of this
    tokenizer's tokens comes back as that token exactly; one it splits shares its confidence."""
    if not all(isinstance(p, str) for p in pieces):
        raise InputError("draft.pieces must be a list of strings")
    ids: list[int] = []
    conf: list[float] = []
    for piece, confidence in zip(pieces, confidences):
        encoded = encode(piece)
        ids += encoded
        conf += [float(confidence)] * len(encoded)
    return ids, conf


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
