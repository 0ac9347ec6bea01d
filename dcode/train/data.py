"""Training windows sampled from the flat token shards built by `corpus.py`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dcode.errors import InputError
from dcode.train.corpus import load_split


class WindowSampler:
    """Random windows of `seq_len` tokens from one split.

    Half the windows start at a file's `<|file|>` header (the way every inference canvas starts),
    the rest anywhere, so the model also sees files cut mid-way like cropped context. Sampling is
    a pure function of (seed, step): resuming at step k draws the same batches as an unbroken run.
    """

    def __init__(self, data_dir: Path, split: str, seq_len: int, p_file_start: float = 0.5) -> None:
        self.shards = [(ids, starts) for ids, starts in load_split(data_dir, split) if len(ids) > seq_len + 1]
        if not self.shards:
            raise InputError(f"{data_dir}: split {split!r} has no shard longer than {seq_len} tokens")
        self.seq_len = seq_len
        self.p_file_start = p_file_start
        sizes = np.array([len(ids) for ids, _ in self.shards], dtype=np.float64)
        self.shard_p = sizes / sizes.sum()
        self.tokens = int(sizes.sum())

    def batch(self, batch_size: int, seed: int, step: int) -> Tensor:
        rng = np.random.default_rng([seed, step])
        out = np.empty((batch_size, self.seq_len), dtype=np.int64)
        for b in range(batch_size):
            ids, starts = self.shards[rng.choice(len(self.shards), p=self.shard_p)]
            limit = len(ids) - self.seq_len
            if len(starts) and rng.random() < self.p_file_start:
                start = int(starts[rng.integers(len(starts))])
                if start > limit:
                    start = int(rng.integers(0, limit + 1))
            else:
                start = int(rng.integers(0, limit + 1))
            out[b] = ids[start : start + self.seq_len]
        return torch.from_numpy(out)
