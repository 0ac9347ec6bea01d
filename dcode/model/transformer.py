"""A bidirectional transformer for masked diffusion (no causal mask), in one file.

Pre-norm blocks with RMSNorm, rotate-half rotary embeddings, grouped-query attention through
`scaled_dot_product_attention`, SwiGLU MLP. The forward pass can take a `KVCache` holding the
keys/values of positions that stay fixed between denoising steps (the context around a hole), so
the sampler recomputes only the active positions: queries come from the active tokens, keys and
values are the cached ones plus the active ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dcode.model.config import ModelConfig


@dataclass
class KVCache:
    """Per-layer post-RoPE keys and values, each [B, n_kv_heads, S, head_dim], and the absolute
    positions [B, S] they were computed at (the attention layout of a causal context needs them).

    A batch of continuations of one prompt keeps the prompt's keys/values once: `shared_keys`
    and `shared_values` ([1, n_kv_heads, P, head_dim]) come before every row's own `keys` and
    `values`, and `positions` covers both ([., P + S]). Each row reading its own copy of a long
    prompt would copy it in every layer of every pass, most of a batched pass's time on a CPU."""

    keys: list[Tensor]
    values: list[Tensor]
    positions: Tensor
    shared_keys: list[Tensor] | None = None
    shared_values: list[Tensor] | None = None

    @property
    def length(self) -> int:
        return self.positions.shape[1]

    def shared_by(self, rows: int) -> "KVCache":
        """The keys/values of this one-row cache as the shared prompt of `rows` continuations
        (with none of their own yet)."""
        assert self.shared_keys is None and (not self.keys or self.keys[0].shape[0] == 1)
        return KVCache([k[:, :, :0].expand(rows, -1, -1, -1) for k in self.keys],
                       [v[:, :, :0].expand(rows, -1, -1, -1) for v in self.values], self.positions,
                       self.keys, self.values)

    def rows(self, index: Tensor) -> "KVCache":
        """The cache of the batch rows in `index` (the shared prompt stays shared)."""
        positions = self.positions if self.positions.shape[0] == 1 else self.positions.index_select(0, index)
        return KVCache([k.index_select(0, index) for k in self.keys], [v.index_select(0, index) for v in self.values],
                       positions, self.shared_keys, self.shared_values)

    def select(self, index: Tensor) -> "KVCache":
        """Keep only the positions in `index` (1-D, indices along S)."""
        assert self.shared_keys is None
        return KVCache(
            [k.index_select(2, index) for k in self.keys],
            [v.index_select(2, index) for v in self.values],
            self.positions.index_select(1, index),
        )


class PrefixCache:
    """Keys/values of the last causal context a model read, kept between requests: a new context
    that shares a prefix with it only computes the rest (llama.cpp's `cache_prompt`). Exact,
    because a causal position never depends on what follows it."""

    def __init__(self) -> None:
        self.ids: Tensor | None = None
        self.kv: KVCache | None = None
        self.last_row: Tensor | None = None  # logits of the context's last position
        self.reused = 0  # positions taken from the cache by the last `read`
        self.compute_s = 0.0  # seconds spent computing contexts' keys/values, all reads together (a server's prompt_ms)

    def read(self, net: "Transformer", ids: Tensor) -> tuple[KVCache, Tensor]:
        """(keys/values of `ids` [T], raw logits [V] of its last position)."""
        start = time.perf_counter()
        n = len(ids)
        keep = 0
        if self.ids is not None:
            m = min(len(self.ids), n)
            same = self.ids[:m] == ids[:m]
            keep = m if bool(same.all()) else int((~same).int().argmax())
            if keep == n == len(self.ids):
                self.reused = n
                return self.kv, self.last_row
            keep = min(keep, n - 1)  # at least one position to compute: its logits are needed
        base = self.kv.select(torch.arange(keep, device=ids.device)) if keep else None
        last = torch.zeros(1, n - keep, dtype=torch.bool, device=ids.device)
        last[0, -1] = True
        logits, kv = net(ids[keep:][None], positions=torch.arange(keep, n, device=ids.device), cache=base,
                         causal_until=n, return_cache=True, rows=last, extend_cache=True)
        self.ids, self.kv, self.last_row, self.reused = ids.clone(), kv, logits[-1], keep
        if ids.is_cuda:  # the kernels run asynchronously: wait for them to count their time
            torch.cuda.synchronize(ids.device)
        self.compute_s += time.perf_counter() - start
        return self.kv, self.last_row


def attention_mask(
    query_positions: Tensor, key_positions: Tensor, causal_until: int | Tensor | None, key_mask: Tensor | None
) -> Tensor | None:
    """Boolean [B, 1, Tq, S] mask (True = may attend), or None when every query sees every key.

    causal_until: positions before it form a causal context (each attends to itself and what
        precedes it, as an autoregressive model was trained); positions from it on (the hole)
        attend to every key. An int, or [B] for a batch of different contexts.
    key_mask: [B, S] bool, False = padding never attended to.
    """
    mask = None
    if causal_until is not None:
        until = torch.as_tensor(causal_until, device=query_positions.device).reshape(-1, 1, 1)
        q, k = query_positions[:, :, None], key_positions[:, None, :]
        mask = (k <= q) | (q >= until)
    if key_mask is not None:
        mask = key_mask[:, None, :] if mask is None else mask & key_mask[:, None, :]
    return None if mask is None else mask[:, None]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in float32, cast back, then scale: the order Dream and LLaDA use, which
        # matters for bf16 parity with their checkpoints.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


def rope_tables(positions: Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos/sin tables [B, T, head_dim] for rotate-half RoPE, computed in float32."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: [B, H, T, D]; tables: [B, T, D] broadcast over heads. The rotation runs in the tables'
    dtype (float32 tables rotate a bf16 x in float32) and the result has x's dtype."""
    xr = x.to(cos.dtype)
    return (xr * cos[:, None] + rotate_half(xr) * sin[:, None]).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.n_kv_heads = cfg.n_kv_heads
        self.head_dim = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.head_dim, bias=cfg.qkv_bias)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cached: tuple[Tensor, Tensor] | None,
        attn_mask: Tensor | None,
        extend: bool = False,
        shared: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Output, then the keys/values of x's positions (`extend`: the cached ones followed by
        them, which attention has put together anyway). `shared`: keys/values [1, ...] every
        row attends to before its cached ones (KVCache.shared_keys)."""
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new_k, new_v = k, v
        if cached is not None:
            # Cached (fixed) positions come first along the key axis; attn_mask follows that order.
            k = torch.cat([cached[0], k], dim=2)
            v = torch.cat([cached[1], v], dim=2)
        # Query head j reads kv head j // n_rep (the grouping Dream's repeat_kv and LLaDA's
        # repeat_interleave both use). The n_rep query heads of a group are stacked along the
        # query axis instead of the keys being repeated: repeating copies every cached key and
        # value n_rep times in every layer of every pass, most of a pass's time at long contexts.
        n_rep = self.n_heads // self.n_kv_heads
        S = k.shape[2] + (0 if shared is None else shared[0].shape[2])
        q = q.reshape(B, self.n_kv_heads, n_rep * T, self.head_dim)
        if attn_mask is not None and n_rep > 1:
            rows = attn_mask.shape[0]
            attn_mask = attn_mask.expand(rows, 1, T, S)[:, :, None].expand(rows, 1, n_rep, T, S).reshape(rows, 1, n_rep * T, S)
        if shared is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False)
        else:
            out = shared_prefix_attention(q, k, v, shared[0], shared[1], attn_mask)
        out = out.reshape(B, self.n_heads, T, self.head_dim).transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return (self.wo(out), k, v) if extend else (self.wo(out), new_k, new_v)


def shared_prefix_attention(q: Tensor, k: Tensor, v: Tensor, shared_k: Tensor, shared_v: Tensor,
                            mask: Tensor | None) -> Tensor:
    """Attention of q [B, H, Q, D] over keys shared by every row ([1, H, P, D]) followed by each
    row's own ([B, H, S, D]); mask [., 1, Q, P + S] (True = may attend). The rows' queries read
    the shared keys as one batch, so those are never copied per row (cascade attention)."""
    B, H, Q, D = q.shape
    P = shared_k.shape[2]
    by_head = q.transpose(0, 1).reshape(H, B * Q, D)
    scores_shared = torch.matmul(by_head, shared_k[0].transpose(1, 2)).view(H, B, Q, P).transpose(0, 1)
    scores = torch.cat([scores_shared, torch.matmul(q, k.transpose(2, 3))], dim=-1) * D**-0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    from_shared = torch.matmul(weights[..., :P].transpose(0, 1).reshape(H, B * Q, P), shared_v[0])
    return from_shared.view(H, B, Q, D).transpose(0, 1) + torch.matmul(weights[..., P:], v)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.w_down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cached, attn_mask, extend=False, shared=None):
        a, k, v = self.attn(self.attn_norm(x), cos, sin, cached, attn_mask, extend, shared)
        x = x + a
        x = x + self.mlp(self.mlp_norm(x))
        return x, k, v


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def init_weights(self, seed: int = 0) -> None:
        """GPT-2 style init (N(0, 0.02), residual projections scaled by depth)."""
        gen = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:
                std = 0.02 / (2 * self.cfg.n_layers) ** 0.5 if name.endswith(("wo.weight", "w_down.weight")) else 0.02
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * std)

    def rope(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos/sin tables for activations of `dtype` (float32 ones where the config says so)."""
        table_dtype = torch.float32 if self.cfg.rope_fp32 else dtype
        return rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, table_dtype)

    def forward(
        self,
        tokens: Tensor,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        key_mask: Tensor | None = None,
        return_cache: bool = False,
        causal_until: int | Tensor | None = None,
        rows: Tensor | None = None,
        attn_mask: Tensor | None = None,
        extend_cache: bool = False,
    ) -> Tensor | tuple[Tensor, KVCache]:
        """Logits [B, T, V] for `tokens` [B, T] (raw rows: row i is the output at position i).

        positions: [B, T] or [T] absolute positions of `tokens` (default 0..T-1); with a cache,
            pass the positions the active tokens occupy in the full canvas.
        cache: keys/values of the fixed positions, attended to but not recomputed.
        key_mask: [B, S] bool over keys (cache positions first, then `tokens`); False = padding.
        return_cache: also return the keys/values of `tokens` as a KVCache.
        causal_until: positions before it attend causally, the rest to everything (see
            `attention_mask`); `len(tokens)` gives a plain causal language model.
        rows: bool [B, T]; only these positions go through the output head, returned as [M, V]
            in row-major order (training needs logits where the loss is taken, and the head is
            a large share of a small model's work).
        attn_mask: bool [B, 1, T, S] (True = may attend), given whole instead of being built from
            causal_until and key_mask (training a drafter packs several blocks, each of which
            sees the context only up to its own start).
        extend_cache: the returned cache is `cache` followed by `tokens` (left-to-right decoding
            appends what it read), taken from what attention concatenated instead of copied again.
        """
        B, T = tokens.shape
        if positions is None:
            positions = torch.arange(T, device=tokens.device)
        if positions.dim() == 1:
            positions = positions.expand(B, T)
        x = self.embed(tokens)
        cos, sin = self.rope(positions, x.dtype)
        key_positions = positions if cache is None else torch.cat([cache.positions.expand(B, -1), positions], dim=1)
        if attn_mask is None:
            attn_mask = attention_mask(positions, key_positions, causal_until, key_mask)
        keys: list[Tensor] = []
        values: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            cached = (cache.keys[i], cache.values[i]) if cache is not None else None
            shared = None if cache is None or cache.shared_keys is None else (cache.shared_keys[i], cache.shared_values[i])
            x, k, v = block(x, cos, sin, cached, attn_mask, extend_cache and cached is not None, shared)
            if return_cache:
                keys.append(k)
                values.append(v)
        logits = self.head(self.norm(x if rows is None else x[rows]))
        if return_cache:
            if extend_cache and cache is not None:
                return logits, KVCache(keys, values, key_positions, cache.shared_keys, cache.shared_values)
            return logits, KVCache(keys, values, positions)
        return logits
