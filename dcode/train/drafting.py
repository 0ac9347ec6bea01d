"""Training the drafter of an anchored model (`dcode train adapt --recipe anchored`).

At inference (dcode.diffusion.anchored) the unmodified base reads every clean token and commits
its own next token; the drafter, the base with the adapter, reads a block of slots after the
newest token (that token, then masks) and guesses the tokens that follow, which the base keeps
where it agrees. So the drafter is trained for exactly that: each example is a window of a
source file read causally by the frozen base (no gradient: its keys/values and next-token
distributions); `cuts` blocks of `draft_tokens` rows are placed in it, each row i of a block at
position c + i, the first holding the token at c and the rest a mask; a block attends to the
base's keys before c and to itself. Row i learns the base's distribution for the token at
c + i + 1 (distillation: what verification compares with is the base's own choice). Only the
blocks run through the adapter and back-propagate, which is what makes CPU training cheap.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dcode.model.tokenizer import Tokenizer
from dcode.model.transformer import Transformer
from dcode.sources.packages import SourceFile

MIN_CONTEXT = 8  # tokens before the first block


@dataclass
class DraftBatch:
    tokens: Tensor  # [B, L] a file header and a window of the file, right-padded
    valid: Tensor  # [B, L] bool, False = padding
    cuts: Tensor  # [B, n] where each block starts; blocks are sorted and never overlap


def draft_window(f: SourceFile, tok: Tokenizer, seq_len: int, rng: random.Random) -> list[int]:
    """The file's header, then its tokens from a random line on, up to `seq_len` in all."""
    lines = f.text.splitlines(keepends=True)
    start = rng.randrange(len(lines)) if len(lines) > 1 else 0
    text = "".join(lines[start:])[: 6 * seq_len]
    return (tok.encode_file_header(f.path) + tok.encode(text))[:seq_len]


def place_cuts(length: int, n: int, k: int, rng: random.Random) -> list[int] | None:
    """`n` block starts in a sequence of `length`: each block of `k` rows needs the token after
    its last row, and blocks do not overlap. None when the sequence is too short."""
    room = length - 1 - k - MIN_CONTEXT + 1  # the possible starts
    stride = room // n
    if stride < k:
        return None
    return [MIN_CONTEXT + i * stride + rng.randrange(stride - k + 1) for i in range(n)]


class DraftStream(torch.utils.data.IterableDataset):
    """Endless batches of drafting windows; each worker draws with its own seed."""

    def __init__(self, files: list[SourceFile], tok: Tokenizer, seq_len: int, batch_size: int, cuts: int,
                 draft_tokens: int, seed: int) -> None:
        self.files, self.tok, self.seq_len, self.batch_size = files, tok, seq_len, batch_size
        self.cuts, self.k, self.seed = cuts, draft_tokens, seed
        self.weights = [len(f.text) ** 0.5 for f in files]

    def __iter__(self) -> Iterator[DraftBatch]:
        info = torch.utils.data.get_worker_info()
        seed = self.seed * 1000 + (info.id if info else 0)
        rng = random.Random(seed)
        while True:
            yield self.batch(rng)

    def batch(self, rng: random.Random) -> DraftBatch:
        windows: list[tuple[list[int], list[int]]] = []
        while len(windows) < self.batch_size:
            ids = draft_window(rng.choices(self.files, self.weights)[0], self.tok, self.seq_len, rng)
            cuts = place_cuts(len(ids), self.cuts, self.k, rng)
            if cuts is not None:
                windows.append((ids, cuts))
        tokens = torch.full((self.batch_size, self.seq_len), self.tok.pad_id, dtype=torch.long)
        valid = torch.zeros(self.batch_size, self.seq_len, dtype=torch.bool)
        for i, (ids, _) in enumerate(windows):
            tokens[i, : len(ids)] = torch.tensor(ids)
            valid[i, : len(ids)] = True
        return DraftBatch(tokens, valid, torch.tensor([c for _, c in windows]))


def block_attention(valid: Tensor, cuts: Tensor, k: int) -> Tensor:
    """[B, 1, n*k, L + n*k]: a block's rows see the context keys before its start and their own
    block (bidirectionally), nothing else."""
    B, L = valid.shape
    n = cuts.shape[1]
    starts = cuts.repeat_interleave(k, dim=1)  # [B, n*k]
    context = (torch.arange(L, device=valid.device)[None, None, :] < starts[:, :, None]) & valid[:, None, :]
    block = torch.arange(n * k, device=valid.device) // k
    own = (block[:, None] == block[None, :]).expand(B, -1, -1)
    return torch.cat([context, own], dim=2)[:, None]


def draft_loss(base: Transformer, drafter: Transformer, batch: DraftBatch, k: int, mask_id: int) -> tuple[Tensor, Tensor]:
    """(distillation loss per drafted row, mean accepted run): cross-entropy of the drafter's
    guesses against the base's next-token distributions, and how many leading guesses of a
    block equal the base's top choice (the drafts a decoding pass would keep)."""
    B, L = batch.tokens.shape
    n = batch.cuts.shape[1]
    positions = (batch.cuts[:, :, None] + torch.arange(k, device=batch.cuts.device)).flatten(1)  # [B, n*k]
    with torch.no_grad():
        rows = torch.zeros(B, L, dtype=torch.bool, device=batch.tokens.device)
        rows.scatter_(1, positions, True)
        teacher, context = base(batch.tokens, key_mask=batch.valid, causal_until=L, return_cache=True, rows=rows)
        target = torch.softmax(teacher.float(), dim=-1)
    inputs = torch.full((B, n * k), mask_id, dtype=torch.long, device=batch.tokens.device)
    inputs[:, ::k] = batch.tokens.gather(1, batch.cuts)
    logits = drafter(inputs, positions=positions, cache=context, attn_mask=block_attention(batch.valid, batch.cuts, k))
    logp = F.log_softmax(logits.float().flatten(0, 1), dim=-1)
    loss = -(target * logp).sum(-1).mean()
    agree = (logp.argmax(-1) == target.argmax(-1)).view(B, n, k)
    accepted = agree.int().cumprod(-1).sum(-1).float().mean()
    return loss, accepted.detach()
