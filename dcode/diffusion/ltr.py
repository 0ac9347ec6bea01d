"""Left-to-right decoding of a causal model with token healing: the floor an infilling model
must beat. It sees only the text before the hole, one token per forward pass, with a KV cache.

Token healing: the prefix's last token is backed off and the first generated token must start
with its text (or be a start of it), so a hole that begins at a line start is not asked for the
lone "\\n" token that BPE never produced before indentation in training. Without it a byte-level
BPE base scores far lower on line-start holes.
"""

from __future__ import annotations

import time

import torch

from dcode.diffusion.engine import Completion, carry_confidences, heal
from dcode.diffusion.sampler import DecodeStats
from dcode.model.loaded import LoadedModel


def block_ended(text: str, single_line: bool) -> int | None:
    """Where a left-to-right hole ends without a suffix to look at: after the first line for a
    one-line hole; for a block, before the first non-blank line indented less than its first
    line (the block is over). None while it has not ended."""
    if single_line:
        cut = text.find("\n")
        return cut + 1 if cut >= 0 else None
    lines = text.splitlines(keepends=True)
    body = [line for line in lines if line.strip()]
    if not body:
        return None
    indent = len(body[0]) - len(body[0].lstrip())
    offset = 0
    for line in lines[:-1] if not text.endswith("\n") else lines:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            return offset
        offset += len(line)
    return None


@torch.inference_mode()
def ltr_infill(model: LoadedModel, prefix: str, *, max_tokens: int, single_line: bool, healing: bool = True) -> Completion:
    """Greedy continuation of `prefix` until `block_ended`, an end token or `max_tokens`."""
    tok, net = model.tokenizer, model.net
    start = time.perf_counter()
    ids = tok.encode(prefix)[-(model.config.max_seq_len - max_tokens - 1):]
    lead = ""
    if healing:
        ids, _, lead, _ = heal(tok, ids, [])
    if not ids:  # the model needs one token to condition on
        ids = [tok.eos_id]
    x = torch.tensor([ids], device=model.device)
    logits, cache = net(x, causal_until=len(ids), return_cache=True)
    allowed = torch.tensor(tok.extending(lead.encode("utf-8")), device=model.device) if lead else None
    out: list[int] = []
    conf: list[float] = []
    passes = 1
    while len(out) < max_tokens:
        row = logits[0, -1].float()
        if allowed is not None and not out:
            keep = torch.full_like(row, float("-inf"))
            keep[allowed] = 0.0
            row = row + keep
        probs = torch.softmax(row, dim=-1)
        p, nxt = probs.max(dim=-1)
        if int(nxt) in tok.stop_ids:
            break
        out.append(int(nxt))
        conf.append(float(p))
        text = tok.decode(out)
        if (text.startswith(lead) or not lead) and block_ended(text[len(lead):], single_line) is not None:
            break
        pos = len(ids) + len(out) - 1
        logits, new = net(nxt.view(1, 1), positions=torch.tensor([pos], device=model.device), cache=cache,
                          causal_until=pos + 1, return_cache=True)
        cache = cache.extend(new)
        passes += 1
    text = tok.decode(out)
    skip = len(lead) if text.startswith(lead) else 0
    end = block_ended(text[skip:], single_line)
    text = text[skip:] if end is None else text[skip : skip + end]
    new_ids = tok.encode(text)
    stats = DecodeStats(forward_passes=passes, tokens=len(out), wall_s=time.perf_counter() - start)
    return Completion(text, new_ids, carry_confidences(tok, out, conf, new_ids, skip), stats)
