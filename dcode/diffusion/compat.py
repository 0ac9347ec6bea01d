"""`--compat` decoding: exact mirrors of each family's reference sampler, on our own transformer.

* `dream_generate` mirrors Dream's `DreamGenerationMixin._sample` (`diffusion_generate`): one
  global eps-schedule over the whole canvas, alg in {origin, maskgit_plus, topk_margin, entropy}.
* `llada_generate` mirrors LLaDA's official `generate()`: blocks x steps, constant per-step
  counts, low_confidence / random remasking, float64 Gumbel sampling, CFG.
* `dreamon_infill` follows DreamOn's variable-length infilling (`<|expand|>` grows the hole,
  EOS inside the hole is deleted). DreamOn's exact file was not available, so this one is "in
  the spirit of" the reference, not a verified mirror.

Same arithmetic, same dtypes (logits stay in the model dtype, as upstream) and the same order of
random draws from torch's global generator as the reference code, so with
`torch.manual_seed(s)` a sampled run matches the reference under the same seed. Defaults are our
own, chosen on purpose (temperature 0): upstream `diffusion_generate` silently inherits
temperature 1.0 / top_k 50 from the model config. Neither reference stops early: decode the
canvas and cut it with `cut_at_stop`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.distributions as dists
import torch.nn.functional as F
from torch import Tensor

from dcode.errors import ModelError
from dcode.model.loaded import LoadedModel, align_logits

TokensHook = Callable[[int | None, Tensor, Tensor | None], Tensor]
LogitsHook = Callable[[int, Tensor, Tensor], Tensor]


def _as_batch(ids: Tensor | Sequence[int] | Sequence[Sequence[int]], device: torch.device) -> Tensor:
    x = torch.as_tensor(ids, dtype=torch.long, device=device)
    return x[None] if x.dim() == 1 else x


def family_logits(model: LoadedModel, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Aligned logits (row i scores token i) in the model dtype, with the family's padding rule:
    padded keys are masked; Dream positions are `cumsum(mask) - 1` (pads at 1), LLaDA's always
    0..T-1. An all-ones mask is the same as none, as upstream."""
    positions = key_mask = None
    if attention_mask is not None and bool((attention_mask == 0).any()):
        key_mask = attention_mask.bool()
        if model.config.family == "dream":
            positions = attention_mask.long().cumsum(-1) - 1
            positions.masked_fill_(attention_mask == 0, 1)
    raw = model.net(x, positions=positions, key_mask=key_mask)
    return align_logits(raw, model.config.logit_shift)


def cut_at_stop(ids: Iterable[int], stop_ids: Iterable[int]) -> list[int]:
    """`ids` up to (not including) the first stop id: how both families end an answer."""
    stop = set(stop_ids)
    out: list[int] = []
    for i in ids:
        if i in stop:
            break
        out.append(int(i))
    return out


# --- Dream ---------------------------------------------------------------------------------------


def _top_p_logits(logits: Tensor, top_p: float) -> Tensor:
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cumulative > top_p
    remove[..., 1:] = remove[..., :-1].clone()  # keep the first token above the threshold
    remove[..., 0] = 0
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, sorted_indices, remove)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def _top_k_logits(logits: Tensor, top_k: int) -> Tensor:
    top_k = min(top_k, logits.size(-1))
    remove = logits < torch.topk(logits, top_k)[0][..., -1, None]
    return logits.masked_fill(remove, torch.finfo(logits.dtype).min)


def sample_tokens(
    logits: Tensor, temperature: float = 0.0, top_p: float | None = None, top_k: int | None = None,
    margin_confidence: bool = False, neg_entropy: bool = False,
) -> tuple[Tensor, Tensor]:
    """Dream's `sample_tokens`: (confidence, token) per row of `logits` [N, V]."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = _top_p_logits(logits, top_p)
    if top_k is not None:
        logits = _top_k_logits(logits, top_k)
    probs = torch.softmax(logits, dim=-1)
    if temperature > 0:
        try:
            x0 = dists.Categorical(probs=probs).sample()
            confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
        except Exception:  # upstream falls back to argmax on any sampling failure
            confidence, x0 = probs.max(dim=-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if margin_confidence:
        sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)
        confidence = sorted_probs[:, 0] - sorted_probs[:, 1]
    if neg_entropy:
        confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    return confidence, x0


def _score(alg: str, logits: Tensor, temperature, top_p, top_k) -> tuple[Tensor, Tensor]:
    if alg not in ("maskgit_plus", "topk_margin", "entropy"):
        raise ValueError(f"unknown alg {alg!r} (origin, maskgit_plus, topk_margin or entropy)")
    return sample_tokens(logits, temperature, top_p, top_k,
                         margin_confidence=alg == "topk_margin", neg_entropy=alg == "entropy")


@torch.inference_mode()
def dream_generate(
    model: LoadedModel,
    prompt_ids: Tensor | Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int,
    steps: int,
    alg: str,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    alg_temp: float | None = None,
    eps: float = 1e-3,
    output_history: bool = False,
    *,
    attention_mask: Tensor | None = None,
    tokens_hook: TokensHook | None = None,
    logits_hook: LogitsHook | None = None,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Dream's `diffusion_generate`: [B, L + max_new_tokens] ids (and the canvas after every step
    when `output_history`). `attention_mask` [B, L] (1 = token, 0 = left padding) as upstream;
    `tokens_hook(step, x, logits) -> x` runs once before the loop (step None) and after each
    step, `logits_hook(step, x, logits) -> logits` after the shift (upstream's two hooks)."""
    mask_id = model.config.mask_id
    x = _as_batch(prompt_ids, model.device)
    x = F.pad(x, (0, max_new_tokens), value=mask_id)
    if attention_mask is not None:
        attention_mask = F.pad(torch.as_tensor(attention_mask, device=model.device), (0, max_new_tokens), value=1)
    history: list[Tensor] | None = [] if output_history else None
    timesteps = torch.linspace(1, eps, steps + 1, device=x.device)
    if tokens_hook is not None:
        x = tokens_hook(None, x, None)
    for i in range(steps):
        mask_index = x == mask_id
        logits = family_logits(model, x, attention_mask)
        if logits_hook is not None:
            logits = logits_hook(i, x, logits)
        mask_logits = logits[mask_index]
        t, s = timesteps[i], timesteps[i + 1]
        if alg == "origin":
            p_transfer = 1 - s / t if i < steps - 1 else 1
            x0 = torch.zeros_like(x[mask_index], dtype=torch.long) + mask_id
            transfer = torch.rand(*x0.shape, device=x.device) < p_transfer
            _, x0[transfer] = sample_tokens(mask_logits[transfer], temperature, top_p, top_k)
            x[mask_index] = x0.clone()
        else:
            confidence, x0 = _score(alg, mask_logits, temperature, top_p, top_k)
            num_mask_token = mask_index.sum() / mask_index.shape[0]
            n = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
            full_confidence = torch.full_like(x, -torch.inf, dtype=logits.dtype)
            full_confidence[mask_index] = confidence
            if n > 0:
                if alg_temp is None or alg_temp == 0:
                    _, transfer_index = torch.topk(full_confidence, n)
                else:
                    full_confidence = F.softmax(full_confidence / alg_temp, dim=-1)
                    transfer_index = torch.multinomial(full_confidence, num_samples=n)
                x_ = torch.zeros_like(x, dtype=torch.long) + mask_id
                x_[mask_index] = x0.clone()
                rows = torch.arange(x.size(0), device=x.device).unsqueeze(1).expand_as(transfer_index)
                x[rows, transfer_index] = x_[rows, transfer_index]
        if tokens_hook is not None:
            x = tokens_hook(i, x, logits)
        if history is not None:
            history.append(x.clone())
    return (x, history) if history is not None else x


# --- LLaDA ---------------------------------------------------------------------------------------


def add_gumbel_noise(logits: Tensor, temperature: float) -> Tensor:
    """LLaDA's float64 Gumbel-max: argmax of the result samples softmax(logits / temperature)."""
    if temperature == 0:
        return logits
    logits = logits.to(torch.float64)
    noise = torch.rand_like(logits, dtype=torch.float64)
    return logits.exp() / (-torch.log(noise)) ** temperature


def get_num_transfer_tokens(mask_index: Tensor, steps: int) -> Tensor:
    """[B, steps] tokens to commit per step: equal shares, the remainder front-loaded."""
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base, remainder = mask_num // steps, mask_num % steps
    out = torch.zeros(mask_num.size(0), steps, device=mask_index.device, dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        out[i, : int(remainder[i])] += 1
    return out


@torch.inference_mode()
def llada_generate(
    model: LoadedModel,
    prompt_ids: Tensor | Sequence[int] | Sequence[Sequence[int]],
    steps: int,
    gen_length: int,
    block_length: int,
    cfg_scale: float = 0.0,
    temperature: float = 0.0,
    remasking: str = "low_confidence",
    attention_mask: Tensor | None = None,
    *,
    logits_eos_inf: bool = False,
    confidence_eos_eot_inf: bool = False,
    eot_id: int | None = None,
) -> Tensor:
    """LLaDA's `generate()`: [B, L + gen_length] ids. Prompts of a batch are left-padded, with
    `attention_mask` [B, L] marking the padding. Deliberate difference: upstream HEAD crashes on
    `cfg_scale > 0` without a mask; here no mask means all ones. The EOS/EOT tricks use the
    model's eos id and `eot_id` (default: the tokenizer's `<|eot_id|>`) instead of constants."""
    mask_id, eos_id = model.config.mask_id, model.config.eos_id
    if confidence_eos_eot_inf and eot_id is None:
        eot_id = model.tokenizer.token_id("<|eot_id|>")
    prompt = _as_batch(prompt_ids, model.device)
    B, Lp = prompt.shape
    x = torch.full((B, Lp + gen_length), mask_id, dtype=torch.long, device=model.device)
    x[:, :Lp] = prompt.clone()
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask, device=model.device)
        attention_mask = torch.cat([attention_mask, torch.ones((B, gen_length), dtype=attention_mask.dtype,
                                                               device=model.device)], dim=-1)
    prompt_index = x != mask_id
    if gen_length % block_length:
        raise ValueError(f"gen_length {gen_length} is not a multiple of block_length {block_length}")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ValueError(f"steps {steps} is not a multiple of the number of blocks {num_blocks}")
    steps = steps // num_blocks
    for num_block in range(num_blocks):
        start = Lp + num_block * block_length
        block_mask_index = x[:, start: start + block_length] == mask_id
        num_transfer_tokens = get_num_transfer_tokens(block_mask_index, steps)
        for i in range(steps):
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                both_mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
                logits = family_logits(model, torch.cat([x, un_x], dim=0), both_mask)
                logits, un_logits = torch.chunk(logits, 2, dim=0)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            else:
                logits = family_logits(model, x, attention_mask)
            if logits_eos_inf:
                logits[:, :, eos_id] = -torch.inf
            logits_with_noise = add_gumbel_noise(logits, temperature)
            x0 = torch.argmax(logits_with_noise, dim=-1)
            if confidence_eos_eot_inf:
                logits_with_noise[:, :, eos_id] = logits[:, :, eot_id] = -torch.inf
            if remasking == "low_confidence":
                p = F.softmax(logits, dim=-1)
                x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
            elif remasking == "random":
                x0_p = torch.rand((x0.shape[0], x0.shape[1]), device=x0.device)
            else:
                raise ValueError(f"unknown remasking {remasking!r} (low_confidence or random)")
            x0_p[:, start + block_length:] = -torch.inf
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -torch.inf)
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(confidence.shape[0]):
                _, select_index = torch.topk(confidence[j], k=int(num_transfer_tokens[j, i]))
                transfer_index[j, select_index] = True
            x[transfer_index] = x0[transfer_index]
    return x


# --- DreamOn ---------------------------------------------------------------------------------------


@torch.inference_mode()
def dreamon_infill(
    model: LoadedModel,
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    *,
    initial_masks: int = 4,
    max_new_tokens: int = 64,
    alg: str = "entropy",
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = None,
    alg_temp: float | None = None,
    pad_eos_to_right: bool = True,
    delete_eos: bool = True,
    expand_id: int | None = None,
    bos_id: int | None = None,
    on_step: Callable[[list[int]], None] | None = None,
) -> list[int]:
    """Fill the hole between `prefix_ids` and `suffix_ids` with a middle of any length up to
    `max_new_tokens` (DreamOn): the canvas is `[bos] + prefix + [mask]*initial_masks + suffix +
    [eos]`. Each step commits the single most confident masked slot (or one drawn from
    softmax(conf / alg_temp)); `<|expand|>` turns its slot into two masks (disabled once the
    middle reaches `max_new_tokens` or the canvas `max_seq_len`); an EOS committed into the
    middle also fills the masks right of it with EOS (`pad_eos_to_right`), and every EOS that
    landed in a masked slot this step is deleted (`delete_eos`), shrinking the canvas. Stops when
    the middle holds no mask. Returns the middle's ids; `on_step(canvas)` sees every step.

    DreamOn recomputes attention over an unpadded window each step; running the model on the
    live canvas alone is the same computation. Upstream's defaults are temperature 0.2,
    top_p 0.9, alg entropy, 4 initial masks, 64 new tokens."""
    cfg, tok = model.config, model.tokenizer
    mask_id, eos_id = cfg.mask_id, cfg.eos_id
    expand_id = expand_id if expand_id is not None else getattr(tok, "expand_id", None)
    if expand_id is None:
        raise ModelError("this checkpoint has no <|expand|> token; DreamOn infilling needs DreamOn weights")
    bos_id = bos_id if bos_id is not None else getattr(tok, "bos_id", None)
    if bos_id is None:
        raise ModelError("no bos token id in the tokenizer files; DreamOn infilling starts with it")
    canvas = [bos_id, *prefix_ids, *[mask_id] * max(1, min(initial_masks, max_new_tokens)), *suffix_ids, eos_id]
    start, end = 1 + len(prefix_ids), len(canvas) - len(suffix_ids) - 1  # the middle is canvas[start:end]
    while True:
        masked = [i for i in range(start, end) if canvas[i] == mask_id]
        if not masked:
            break
        logits = family_logits(model, torch.tensor([canvas], device=model.device))[0, masked]
        if end - start >= max_new_tokens or len(canvas) >= cfg.max_seq_len:
            logits[:, expand_id] -= 1e9
        confidence, x0 = _score(alg, logits, temperature, top_p, top_k)
        if alg_temp:
            j = int(torch.multinomial(F.softmax(confidence / alg_temp, dim=-1), 1))
        else:
            j = int(torch.argmax(confidence))
        pos, token = masked[j], int(x0[j])
        canvas[pos] = token
        if token == eos_id and pad_eos_to_right:
            for i in masked:
                if i > pos:
                    canvas[i] = eos_id
        if token == expand_id:
            canvas[pos: pos + 1] = [mask_id, mask_id]
            end += 1
        elif delete_eos:
            gone = {i for i in masked if canvas[i] == eos_id}
            canvas = [t for i, t in enumerate(canvas) if i not in gone]
            end -= len(gone)
        if on_step is not None:
            on_step(list(canvas))
    return canvas[start:end]
