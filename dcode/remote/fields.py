"""The decoding fields of a dcode /infill request (llama.cpp's names where it has one), shared by
`dcode complete` and `dcode serve`, which read them, and by the clients that send them: the
remote model talking to `dcode serve`, and the hook. Stdlib only: `dcode complete` stays light."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imports torch: only when a model runs
    from dcode.diffusion.sampler import DecodeOptions

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
    "max_lines": ((int,), "max_lines"),
    "best_of": ((int,), "best_of"),
}


def request_fields(options: DecodeOptions) -> dict[str, Any]:
    """The request fields that `dcode.complete.request.parse_request` turns back into these
    decoding options."""
    values = {field: getattr(options, name) for field, (_, name) in NUMERIC_FIELDS.items()}
    return {field: value for field, value in values.items() if value is not None}
