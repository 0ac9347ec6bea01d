"""The masked-diffusion training objective and the mix of corruption shapes.

Every training sequence is a clean window of packed source (see `corpus.py`). Each one is
corrupted in one of three ways, chosen per sequence:

* **MDLM** (`p_mdlm`, default 0.5). t ~ U(eps, 1); every token is masked independently with
  probability t; cross-entropy on masked positions weighted 1/t. This is the standard continuous-
  time masked-diffusion ELBO (MDLM / LLaDA): it teaches the model every noise level, which the
  sampler walks through as it commits tokens over several passes.

* **Hole** (`p_hole`, default 0.35). A contiguous span of whole lines -- one line half of the time,
  otherwise 2 up to `max_hole_lines` lines (a block or a function body) -- followed by a random
  number of `<|pad|>` tokens inserted after it (the suffix shifts right; the window is cut back to
  its length). This is exactly the canvas `dcode.diffusion.engine.infill` builds:
  prefix + [MASK]*L + suffix, where the L slots hold the hole's content and then pads the engine
  drops. With the pads the model learns where a hole *ends*, so a hole longer than the answer
  fills with pads instead of invented code; with 0 pads (sometimes) it learns that a full hole means
  "keep going" (the engine then grows the hole). Half the holes are masked fully (t = 1, the
  sampler's first pass); the other half mask each hole token with probability t, weight 1/t
  (the sampler's later passes see partially filled holes). Context outside the hole stays clean.
  Line boundaries come from the tokenizer (`token_bytes(id)` ends with a newline): dcode's
  tokenizer encodes line by line, so a hole of whole lines tokenizes the same way in training and
  at inference.

* **Prefix** (`p_prefix`, the rest, default 0.15). A clean prefix (cut at a line boundary half of
  the time) and the rest masked with probability t, weight 1/t: continuation at the end of a file
  or a semi-autoregressive block, where nothing to the right is known.

The loss is the weighted cross-entropy summed over masked positions divided by the number of
positions in the batch (MDLM's normalisation, an unbiased ELBO estimate for the MDLM rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dcode.model.transformer import Transformer


@dataclass
class MixConfig:
    p_mdlm: float = 0.5
    p_hole: float = 0.35  # the rest is "prefix"
    eps: float = 1e-3
    max_hole_lines: int = 24
    max_pads: int = 48
    p_hole_full: float = 0.5


@dataclass
class TokenInfo:
    """What the objective needs from the tokenizer: line-end flags and special ids."""

    line_end: Tensor  # bool [V]: token ends with "\n" (special tokens count as boundaries)
    special: Tensor  # bool [V]
    mask_id: int
    pad_id: int

    @classmethod
    def from_tokenizer(cls, tok, vocab_size: int | None = None) -> "TokenInfo":
        v = vocab_size or tok.vocab_size
        line_end = torch.zeros(v, dtype=torch.bool)
        special = torch.zeros(v, dtype=torch.bool)
        for i in range(tok.vocab_size):
            line_end[i] = tok.token_bytes(i).endswith(b"\n")
        for i in tok.special_ids:
            special[i] = True
            line_end[i] = True
        return cls(line_end, special, tok.mask_id, tok.pad_id)


@dataclass
class Corrupted:
    inputs: Tensor  # [B, T] with mask ids
    targets: Tensor  # [B, T] clean tokens (pads inside holes)
    weights: Tensor  # [B, T] float, 0 where not masked
    kind: Tensor  # [B] 0 = mdlm, 1 = hole, 2 = prefix


def line_starts(row: Tensor, info: TokenInfo) -> Tensor:
    """Positions where a line starts: 0 and every position after a line-ending token."""
    ends = info.line_end[row]
    starts = torch.nonzero(ends[:-1]).flatten() + 1
    return torch.cat([torch.zeros(1, dtype=torch.long), starts])


def make_hole(row: Tensor, info: TokenInfo, cfg: MixConfig, gen: torch.Generator) -> tuple[Tensor, Tensor] | None:
    """(tokens with pads inserted, bool mask of the hole+pad span) for one row, or None when the
    window has no usable whole-line span (e.g. one enormous line)."""
    T = row.numel()
    starts = line_starts(row, info).tolist()
    bounds = [s for s in starts if s < T] + [T]
    # Lines are [bounds[i], bounds[i+1]). Line 0 (usually cut by the window start: the model always
    # sees some left context, as at inference) and the last line (cut by the window end) are never
    # part of a hole, so the usable lines are 1 .. len(bounds) - 3.
    n_avail = len(bounds) - 3
    if n_avail < 1:
        return None
    one_line = torch.rand((), generator=gen).item() < 0.5
    n_lines = 1 if one_line else int(torch.randint(2, cfg.max_hole_lines + 1, (), generator=gen))
    n_lines = min(n_lines, n_avail)
    first = int(torch.randint(1, len(bounds) - 1 - n_lines, (), generator=gen))
    s, e = bounds[first], bounds[first + n_lines]
    if e <= s or bool(info.special[row[s:e]].any()):
        return None  # holes never swallow a file header or end-of-text
    content = e - s
    max_pads = min(cfg.max_pads, max(8, content))
    n_pads = int(torch.randint(0, max_pads + 1, (), generator=gen))
    pads = torch.full((n_pads,), info.pad_id, dtype=row.dtype)
    new = torch.cat([row[:s], row[s:e], pads, row[e:]])[:T]
    span = torch.zeros(T, dtype=torch.bool)
    span[s : min(e + n_pads, T)] = True
    return new, span


def corrupt(clean: Tensor, info: TokenInfo, cfg: MixConfig, gen: torch.Generator) -> Corrupted:
    """Apply the training mix to a batch of clean windows [B, T] (on CPU)."""
    B, T = clean.shape
    targets = clean.clone()
    t = cfg.eps + (1 - cfg.eps) * torch.rand(B, generator=gen)
    u = torch.rand(B, generator=gen)
    kind = torch.where(u < cfg.p_mdlm, 0, torch.where(u < cfg.p_mdlm + cfg.p_hole, 1, 2))
    noise = torch.rand(B, T, generator=gen)
    masked = noise < t[:, None]  # MDLM default for every row; holes and prefixes restrict it
    for b in range(B):
        if kind[b] == 1:
            hole = make_hole(clean[b], info, cfg, gen)
            if hole is None:
                kind[b] = 0
                continue
            targets[b], span = hole
            if torch.rand((), generator=gen).item() < cfg.p_hole_full:
                t[b] = 1.0
                masked[b] = span
            else:
                masked[b] &= span
                if not masked[b].any():  # at least one masked token, else the row teaches nothing
                    masked[b, torch.nonzero(span).flatten()[0]] = True
        elif kind[b] == 2:
            cut = _prefix_cut(clean[b], info, gen)
            masked[b, :cut] = False
            if not masked[b].any():
                masked[b, -1] = True
    inputs = torch.where(masked, torch.full_like(targets, info.mask_id), targets)
    weights = masked.float() / t[:, None]
    return Corrupted(inputs, targets, weights, kind)


def _prefix_cut(row: Tensor, info: TokenInfo, gen: torch.Generator) -> int:
    T = row.numel()
    if torch.rand((), generator=gen).item() < 0.5:
        starts = [s for s in line_starts(row, info).tolist() if 0 < s < T]
        if starts:
            return starts[int(torch.randint(0, len(starts), (), generator=gen))]
    return int(torch.randint(1, T, (), generator=gen))


def diffusion_loss(logits: Tensor, batch: Corrupted) -> tuple[Tensor, Tensor]:
    """(weighted ELBO loss normalised by positions, plain mean CE over masked positions).

    `logits` is either [B, T, V] for every position or [M, V] for the masked positions only
    (in row-major order, as `masked_logits` returns them)."""
    V = logits.shape[-1]
    w = batch.weights.reshape(-1)
    masked = w > 0
    if logits.dim() == 3:
        logits = logits.reshape(-1, V)[masked]
    ce = F.cross_entropy(logits.float(), batch.targets.reshape(-1)[masked], reduction="none")
    loss = (ce * w[masked]).sum() / w.numel()
    plain = ce.mean() if ce.numel() else ce.sum()
    return loss, plain.detach()


def masked_logits(net: Transformer, inputs: Tensor, masked: Tensor) -> Tensor:
    """Logits [M, V] of the masked positions only (`masked` bool [B, T]): training needs no
    prediction for the clean positions."""
    return net(inputs, rows=masked)
