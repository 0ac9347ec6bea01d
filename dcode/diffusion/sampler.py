"""The denoising loop: turn masked slots of a token canvas into tokens, a few per pass.

Each pass runs the model, proposes a token for every masked slot of the current block, and
commits some of them:
  * threshold decoding (Fast-dLLM): every slot whose top probability >= tau, at least one;
  * fixed schedule (LLaDA low-confidence remasking): the k most confident.
A hole may end in pad tokens (filler the hole did not need); when a hole fills up with no pad or
end token at all, it grows (up to `max_tokens`) so the user never has to guess its length.
With `use_cache`, keys/values of the positions outside the current block are computed once per
block and reused (Fast-dLLM's dual cache); only the block is recomputed each pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dcode.model.loaded import LoadedModel
from dcode.model.transformer import KVCache


@dataclass
class DecodeOptions:
    threshold: float | None = 0.9  # commit every slot with top probability >= threshold
    tokens_per_step: int | None = None  # fixed schedule instead: commit exactly this many per pass
    steps: int | None = None  # cap on passes (more tokens per pass as the cap nears)
    block_size: int | None = None  # semi-autoregressive blocks, left to right
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    max_tokens: int = 256  # a hole never grows beyond this many tokens
    initial_tokens: int | None = None  # first size of the hole (default depends on the task)
    min_tokens: int = 0  # a hole meant to hold code (a marker, a stub, a function body) must not
    # come back empty: see require_code
    use_cache: bool = True
    deadline_s: float | None = None  # after this, commit everything left in one last pass
    # Anchored decoding (dcode.diffusion.anchored): candidate endings scored against the suffix,
    # and how many lines the hole may hold (None: any).
    best_of: int | None = None  # branches at the first slot that carries code (None: by the hole's
    # shape, dcode.diffusion.endings.default_best_of: 4 on one line, 1 for a block)
    max_lines: int | None = None
    draft_tokens: int = 0  # slots guessed ahead per pass, which the base keeps where it agrees (0: none)
    drafter: str = "context"  # what guesses them: "context" (copied from the text around the hole,
    # dcode.diffusion.lookup) or "adapter" (the model's trained drafter)
    ending: str | None = None  # how the suffix chooses the ending: dcode.diffusion.endings.ENDING_RULES
    # (None: the measured default for the hole's shape, endings.default_rule)


@dataclass
class DecodeStats:
    forward_passes: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    drafter_passes: int = 0  # anchored decoding: the drafter's forwards over masked slots

    @property
    def tokens_per_forward(self) -> float:
        return self.tokens / self.forward_passes if self.forward_passes else 0.0

    def as_dict(self) -> dict:
        return {
            "forward_passes": self.forward_passes,
            "tokens": self.tokens,
            "tokens_per_forward": round(self.tokens_per_forward, 3),
            "wall_s": round(self.wall_s, 4),
        }


@dataclass
class HoleState:
    """One snapshot of the hole, yielded after every pass (the UI's live view)."""

    tokens: list[int]  # hole tokens, masks included
    confidences: list[float]  # probability each token had when committed (0 while masked)
    mask_id: int
    stats: DecodeStats
    deadline_hit: bool = False
    done: bool = False

    @property
    def masked(self) -> int:
        return sum(t == self.mask_id for t in self.tokens)


@dataclass
class Canvas:
    """Token canvas `before + hole + after`; only masked hole slots are ever written."""

    tokens: Tensor  # [T] long
    confidence: Tensor  # [T] float
    hole_start: int
    hole_end: int
    editable: Tensor = field(init=False)  # [T] bool: slots the sampler may write

    def __post_init__(self) -> None:
        self.editable = torch.zeros_like(self.tokens, dtype=torch.bool)

    @classmethod
    def build(cls, before: list[int], hole: list[int], after: list[int], mask_id: int, device) -> "Canvas":
        ids = torch.tensor(before + hole + after, dtype=torch.long, device=device)
        conf = torch.ones(len(ids), dtype=torch.float32, device=device)
        canvas = cls(ids, conf, len(before), len(before) + len(hole))
        canvas.editable = ids == mask_id
        canvas.editable[: canvas.hole_start] = False
        canvas.editable[canvas.hole_end :] = False
        canvas.confidence[canvas.editable] = 0.0
        return canvas

    def grow(self, n: int, mask_id: int) -> None:
        at = self.hole_end
        dev = self.tokens.device
        self.tokens = torch.cat([self.tokens[:at], torch.full((n,), mask_id, device=dev), self.tokens[at:]])
        self.confidence = torch.cat([self.confidence[:at], torch.zeros(n, device=dev), self.confidence[at:]])
        self.editable = torch.cat([self.editable[:at], torch.ones(n, dtype=torch.bool, device=dev), self.editable[at:]])
        self.hole_end += n

    def hole_state(self, mask_id: int, stats: DecodeStats, **flags) -> HoleState:
        hs, he = self.hole_start, self.hole_end
        return HoleState(
            self.tokens[hs:he].tolist(), self.confidence[hs:he].tolist(), mask_id, stats, **flags
        )


class LogitSource:
    """Aligned logits for chosen positions, through a per-block KV cache when enabled."""

    def __init__(self, model: LoadedModel, use_cache: bool, causal_until: int | None = None) -> None:
        self.model = model
        self.use_cache = use_cache
        # A causal-context model (see ModelConfig.causal_context) reads everything before the
        # hole causally.
        self.causal_until = causal_until
        self.shift = model.config.logit_shift
        self.cache: KVCache | None = None
        self.query: Tensor | None = None  # canvas positions recomputed while the cache is valid
        self.forward_passes = 0

    def invalidate(self) -> None:
        self.cache = None
        self.query = None

    def _causal_context(self, tokens: Tensor, wanted: Tensor) -> Tensor:
        """A causal-context model: the context's keys/values come from the model's prefix cache
        (exact, shared across requests); every pass recomputes all positions from the hole on,
        which attend to the context and to each other. No approximation. Only the rows that
        score a wanted token go through the output head."""
        hs = self.causal_until
        context, last_row = self.model.prefix_cache.read(self.model.net, tokens[:hs])
        positions = torch.arange(hs, tokens.shape[0], device=tokens.device)
        source = wanted - self.shift  # the position whose output scores each wanted token
        inside = source >= hs  # else it is the context's last position (shifted logits)
        needed = torch.zeros(1, len(positions), dtype=torch.bool, device=tokens.device)
        needed[0, source[inside] - hs] = True
        raw = self.model.net(tokens[hs:][None], positions=positions, cache=context, causal_until=hs, rows=needed)
        row_of = needed[0].long().cumsum(0) - 1  # position (from hs) -> its row in `raw`
        out = last_row.float().expand(len(wanted), -1).clone()
        out[inside] = raw[row_of[source[inside] - hs]].float()
        return out

    @torch.inference_mode()
    def __call__(self, tokens: Tensor, block: Tensor, wanted: Tensor) -> Tensor:
        """float32 logits [len(wanted), V], row j scoring the token at canvas position wanted[j].

        `block` holds the positions that may change until the next invalidate(); with the cache
        on, only they (and, for a shifted model, the position left of each) are recomputed.
        """
        self.forward_passes += 1
        net = self.model.net
        T = tokens.shape[0]
        until = self.causal_until
        if until is not None and self.use_cache and until > 0 and self.shift in (0, 1):
            return self._causal_context(tokens, wanted)
        if not self.use_cache:
            raw = net(tokens[None], causal_until=until)[0]
            return raw[wanted - self.shift].float()
        if self.cache is None:
            query = torch.unique(torch.cat([block, (block - self.shift).clamp(min=0)]))
            fixed = torch.ones(T, dtype=torch.bool, device=tokens.device)
            fixed[query] = False
            raw, kv = net(tokens[None], return_cache=True, causal_until=until)
            self.cache = kv.select(fixed.nonzero().squeeze(1))
            self.query = query
            return raw[0, wanted - self.shift].float()
        assert self.query is not None
        raw = net(tokens[self.query][None], positions=self.query, cache=self.cache, causal_until=until)[0]
        rows = torch.searchsorted(self.query, wanted - self.shift)
        return raw[rows].float()


def propose(logits: Tensor, options: DecodeOptions, banned: list[int], gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(token, confidence) per row: argmax, or a temperature / top-p sample, never a banned id."""
    logits = logits.clone()
    logits[:, banned] = float("-inf")
    if options.temperature <= 0:
        probs = torch.softmax(logits, dim=-1)
        conf, tok = probs.max(dim=-1)
        return tok, conf
    probs = torch.softmax(logits / options.temperature, dim=-1)
    if options.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p > options.top_p
        sorted_p[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    tok = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    return tok, probs.gather(1, tok[:, None]).squeeze(1)


def require_code(logits: Tensor, slot: Tensor, min_tokens: int, end_ids: Tensor, tok) -> Tensor:
    """No end token in the hole's first `min_tokens` slots, and after the first slot (which may
    be indentation) no whitespace-only token either: the hole gets at least some code."""
    logits = logits.clone()  # inference-mode tensors cannot be written in place
    early = (slot < min_tokens).nonzero().squeeze(1)
    logits[early[:, None], end_ids] = float("-inf")
    later = ((slot > 0) & (slot < min_tokens)).nonzero().squeeze(1)
    if len(later) and tok.whitespace_ids:
        blank = torch.tensor(tok.whitespace_ids, device=logits.device)
        logits[later[:, None], blank] = float("-inf")
    return logits


def constrain_first(logits: Tensor, slot: Tensor, allowed: Tensor) -> Tensor:
    """The hole's first slot may only take `allowed` ids (token healing: a token that re-covers
    the text backed off the prefix)."""
    first = (slot == 0).nonzero().squeeze(1)
    if not len(first):
        return logits
    keep = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
    keep[allowed] = 0.0
    logits = logits.clone()
    logits[first] += keep
    return logits


def commit_count(conf: Tensor, options: DecodeOptions, masked_total: int, passes_done: int) -> int:
    """How many of this pass's proposals to commit."""
    n_cand = conf.shape[0]
    if options.tokens_per_step is not None:
        n = options.tokens_per_step
    elif options.threshold is not None:
        n = int((conf >= options.threshold).sum())
    else:
        n = 1
    if options.steps is not None:
        passes_left = max(1, options.steps - passes_done)
        n = max(n, math.ceil(masked_total / passes_left))
    return max(1, min(n, n_cand))


def current_block(canvas: Canvas, masked: Tensor, block_size: int | None) -> Tensor:
    """Positions of the left-most block of the hole that still has masked slots to fill."""
    hs, he = canvas.hole_start, canvas.hole_end
    positions = torch.arange(hs, he, device=canvas.tokens.device)
    if not block_size:
        return positions
    pending = masked[hs:he].nonzero()
    first = int(pending[0]) if len(pending) else 0
    start = (first // block_size) * block_size
    return positions[start : start + block_size]


def denoise(
    model: LoadedModel,
    canvas: Canvas,
    options: DecodeOptions,
    *,
    grow: bool = True,
    end_fills_rest: bool = True,
    first_allowed: list[int] | None = None,
) -> Iterator[HoleState]:
    """Denoise every editable masked slot of `canvas`, yielding the hole after each pass.

    grow: when the hole is full and holds no end token, append masks (up to max_tokens).
    end_fills_rest: once an end token (pad/eos/stop) is committed, the masked slots after it in
        the hole become pad: the hole has ended there (DreamOn's pad-to-right).
    first_allowed: the only ids the hole's first slot may take (token healing), None = any.
    """
    tok = model.tokenizer
    mask_id = tok.mask_id
    end_ids = torch.tensor(sorted(tok.stop_ids), device=canvas.tokens.device)
    banned = [mask_id] + ([tok.file_id] if tok.file_id is not None else [])
    if tok.bos_id is not None and tok.bos_id not in tok.stop_ids:
        banned.append(tok.bos_id)
    gen = torch.Generator(device=canvas.tokens.device).manual_seed(options.seed)
    source = LogitSource(model, options.use_cache, canvas.hole_start if model.config.causal_context else None)
    allowed = torch.tensor(first_allowed, device=canvas.tokens.device) if first_allowed else None
    stats = DecodeStats()
    start_time = time.perf_counter()
    block_key: tuple[int, int] | None = None
    deadline_hit = False

    while True:
        masked = canvas.editable & (canvas.tokens == mask_id)
        if not masked.any():
            hole = canvas.tokens[canvas.hole_start : canvas.hole_end]
            room = options.max_tokens - (canvas.hole_end - canvas.hole_start)
            if grow and room > 0 and not torch.isin(hole, end_ids).any():
                canvas.grow(min(room, max(8, (canvas.hole_end - canvas.hole_start) // 2)), mask_id)
                source.invalidate()
                continue
            break
        deadline_hit = options.deadline_s is not None and time.perf_counter() - start_time > options.deadline_s
        if deadline_hit:
            source.invalidate()
            block = masked.nonzero().squeeze(1)
        else:
            block = current_block(canvas, masked, options.block_size)
        key = (int(block[0]), canvas.hole_end)
        if key != block_key:
            source.invalidate()
            block_key = key
        wanted = block[masked[block]]
        logits = source(canvas.tokens, block, wanted)
        if options.min_tokens:
            logits = require_code(logits, wanted - canvas.hole_start, options.min_tokens, end_ids, tok)
        if allowed is not None:
            logits = constrain_first(logits, wanted - canvas.hole_start, allowed)
        cand_tok, cand_conf = propose(logits, options, banned, gen)
        if deadline_hit:
            n = len(wanted)
        else:
            n = commit_count(cand_conf, options, int(masked.sum()), source.forward_passes - 1)
        chosen = torch.topk(cand_conf, n).indices
        pos = wanted[chosen]
        canvas.tokens[pos] = cand_tok[chosen]
        canvas.confidence[pos] = cand_conf[chosen]
        stats.tokens += n
        if end_fills_rest:
            fill_after_end(canvas, end_ids, tok.pad_id, mask_id)
        stats.forward_passes = source.forward_passes
        stats.wall_s = time.perf_counter() - start_time
        yield canvas.hole_state(mask_id, stats, deadline_hit=deadline_hit)
        if deadline_hit:
            break
    stats.forward_passes = source.forward_passes
    stats.wall_s = time.perf_counter() - start_time
    yield canvas.hole_state(mask_id, stats, deadline_hit=deadline_hit, done=True)


def fill_after_end(canvas: Canvas, end_ids: Tensor, pad_id: int, mask_id: int) -> None:
    hs, he = canvas.hole_start, canvas.hole_end
    hole = canvas.tokens[hs:he]
    ends = torch.isin(hole, end_ids).nonzero()
    if not len(ends):
        return
    first = hs + int(ends[0])
    tail = torch.arange(first + 1, he, device=hole.device)
    tail = tail[(canvas.tokens[tail] == mask_id) & canvas.editable[tail]]
    canvas.tokens[tail] = pad_id
    canvas.confidence[tail] = float(canvas.confidence[first])
