"""Anchored decoding: a pretrained causal base fills the hole, the suffix decides the ending.

Clean tokens are the base's own. The prompt (context files, the file's header, the prefix) and
every committed token are read causally by the unmodified base, as in its pretraining; the
prompt's keys/values come from the model's PrefixCache (computed once, shared by requests with
the same prefix) and each committed token's are appended once. The frontier, the first
uncommitted slot, takes the base's own next-token distribution, with token healing (the
prefix's last token is backed off and the first slot must re-cover its text).

The suffix decides where the hole ends (InCoder's left-to-right reranking). Leading whitespace
is committed greedily; at the first slot that carries code the decoder branches on the
`best_of` most likely tokens (by default 4 for a one-line hole, 1 for a block) and continues each
(one batched pass per token). Every branch gives candidate endings (its first line for a
one-line hole, each statement boundary of a block, the place where it starts repeating the rest
of the cursor's line), and the base scores each over the candidate and the first lines of the
suffix, in one batched pass; a rule of dcode.diffusion.endings (joint log p on one line, the
suffix's log p for a block) picks one. With `best_of = 1` and no suffix to score, this is plain
greedy left-to-right decoding with token healing: the floor any infilling decoder has to beat.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dcode.diffusion.completion import Completion, Prompt, carry_confidences, last_completion, line_bounds
from dcode.diffusion.endings import (REFINE_BEST_OF, Ending, best_ending, block_endings, default_best_of, default_rule,
                                    mid_line_endings)
from dcode.diffusion.holes import HoleShape, anchored_prompt, block_ended, hole_shape, nth_line_end, reaches_suffix
from dcode.diffusion.lookup import ContextLookup
from dcode.diffusion.sampler import DecodeOptions, DecodeStats, HoleState, propose
from dcode.model.loaded import LoadedModel
from dcode.model.transformer import KVCache

SUFFIX_ROOM = 96  # tokens kept free in the context for the scored suffix lines
PRUNE_NATS = 12.0  # a branch this much less likely than the best live one (same length) is given up
MAX_CANDIDATES = 16
# Suffix tokens that score a candidate. The first ones decide whether a candidate joins the code
# after it; a long line (a table, a call with many arguments) otherwise costs every candidate a
# row of 60-80 tokens in the scoring pass, most of a request's time on a CPU.
SCORED_SUFFIX_TOKENS = 32


@dataclass
class Branch:
    """One continuation: its tokens (from the hole's first slot) and each one's probability."""

    tokens: list[int]
    probs: list[float]
    text_end: int | None = None  # characters of the hole's text (lead stripped) where it ended
    stopped: bool = False  # an end token came (or max_tokens): it can grow no further
    reached_suffix: bool = False  # it ended by writing the suffix's first lines again
    pruned: bool = False  # given up: far less likely than another branch of the same length


class AnchoredDecoder:
    """One hole: the clean path through the base, branching, candidate endings, suffix scoring."""

    def __init__(self, model: LoadedModel, prompt: Prompt, shape: HoleShape, options: DecodeOptions,
                 exclude: str | None = None) -> None:
        self.model, self.tok, self.prompt, self.shape, self.options = model, model.tokenizer, prompt, shape, options
        self.device = model.device
        self.stats = DecodeStats()
        self.start = time.perf_counter()
        self.gen = torch.Generator(device=self.device).manual_seed(options.seed)
        tok = self.tok
        self.banned = [i for i in (tok.mask_id, tok.pad_id, tok.file_id, tok.bos_id) if i is not None and i not in tok.stop_ids]
        self.end_ids = sorted(tok.stop_ids)
        self.deadline_hit = False
        self.exclude = exclude  # a refinement's old text: never chosen while another candidate exists
        self.anchor = [] if shape.one_line else shape.anchor
        self.scored_suffix = _first_tokens(self.tok, shape.suffix_head, SCORED_SUFFIX_TOKENS)
        self.best_of = options.best_of or default_best_of(shape.one_line)
        self.prompt_kv, self.prompt_last = self._read_prompt()

    # -- the clean path (generators cannot hold inference mode across yields, so each forward
    # enters it itself) ----------------------------------------------------------------------
    @torch.inference_mode()
    def _read_prompt(self) -> tuple[KVCache, Tensor]:
        ids = torch.tensor(self.prompt.before, device=self.device)
        kv, last = self.model.prefix_cache.read(self.model.net, ids)
        self.stats.forward_passes += 1
        return kv, last.float()

    @torch.inference_mode()
    def _step(self, cache: KVCache, tokens: Tensor) -> tuple[Tensor, KVCache]:
        """Append one committed token per row ([B]) to the clean path: logits [B, V] of the next slot."""
        pos = cache.positions.shape[1]
        logits, extended = self.model.net(tokens[:, None], positions=torch.tensor([pos], device=self.device),
                                          cache=cache, causal_until=pos + 1, return_cache=True, extend_cache=True)
        self.stats.forward_passes += 1
        return logits[:, -1].float(), extended

    def _constrain(self, logits: Tensor, trunk: list[int], texts: Sequence[str]) -> Tensor:
        """Healing until the trunk covers the healed lead; no end token before the hole holds code
        when it must."""
        logits = logits.clone()
        logits[:, self.banned] = float("-inf")
        covered = self.tok.decode(trunk)
        if len(covered) < len(self.prompt.lead):  # a token may cover only part of it ("\n   " of "\n    ")
            keep = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
            keep[self.tok.extending(self.prompt.lead[len(covered) :].encode("utf-8"))] = 0.0
            logits += keep
        if self.options.min_tokens:
            for row, text in enumerate(texts):
                if not text.strip():
                    logits[row, self.end_ids] = float("-inf")
        return logits

    def _carries_code(self, token: int, before: list[int]) -> bool:
        """The token adds something other than whitespace to the hole (healed lead excluded)."""
        return bool(self.hole_text(before + [token])[len(self.hole_text(before)) :].strip())

    def hole_text(self, tokens: list[int]) -> str:
        text, lead = self.tok.decode(tokens), self.prompt.lead
        if text.startswith(lead):
            return text[len(lead) :]
        return "" if lead.startswith(text) else text  # the lead not covered yet

    # -- decoding ---------------------------------------------------------------------------
    def run(self) -> Iterator[HoleState | Completion]:
        cache, logits = _rows(self.prompt_kv, [0]), self.prompt_last[None]
        trunk: list[int] = []
        probs: list[float] = []
        # Leading whitespace (indentation) is committed greedily: every branch shares it.
        while len(trunk) < self.options.max_tokens:
            row = self._constrain(logits, trunk, [self.hole_text(trunk)])
            token, conf = propose(row, self.options, [], self.gen)
            t = int(token[0])
            if t in self.tok.stop_ids:
                yield self._finish([Branch(trunk, probs, stopped=True)])
                return
            if self._carries_code(t, trunk) or (self.shape.one_line and "\n" in self.hole_text(trunk + [t])):
                break  # a one-line hole does not open with a blank line: branch on code instead
            trunk.append(t)
            probs.append(float(conf[0]))
            yield self._state(trunk)
            logits, cache = self._step(cache, token)
        else:
            yield self._finish([Branch(trunk, probs, stopped=True)])
            return
        dist = torch.softmax(row[0], -1)
        branches = [Branch(trunk + [f], probs + [float(dist[f])]) for f in self._branch_tokens(row[0], t, trunk)]
        for branch in branches:
            self._check_end(branch)
        yield from self._continue(branches, _rows(cache, [0] * len(branches)))
        yield self._finish(branches)

    def _branch_tokens(self, row: Tensor, proposed: int, trunk: list[int]) -> list[int]:
        """The proposed token if it carries code, then the most likely others that do (`best_of`
        in all): the places where one-token choices most often decide a line."""
        chosen = [proposed] if self._carries_code(proposed, trunk) else []
        for t in torch.argsort(row, descending=True)[: 16 * self.best_of].tolist():
            if len(chosen) >= self.best_of or row[t] == float("-inf"):
                break
            if t not in chosen and t not in self.tok.stop_ids and self._carries_code(t, trunk):
                chosen.append(t)
        return chosen or [proposed]

    def _continue(self, branches: list[Branch], cache: KVCache) -> Iterator[HoleState]:
        """Grow every live branch until each has ended, one batched pass at a time.

        Each pass the base reads, per branch, its pending tokens: its last committed token, then
        the guesses for the slots after it. It keeps the longest run of guesses equal to its own
        choices, then its own next token, so the result is exactly the base's. The next guesses
        are copied from the context (`drafter: context`, dcode.diffusion.lookup), or come from
        the adapter drafter, which reads masked slots after the kept tokens (attending to every
        clean key, bidirectionally among the masks). Without drafts (`draft_tokens: 0`), or when
        sampling, a pass commits one token per branch."""
        k = self.options.draft_tokens if self.options.temperature <= 0 else 0
        drafter = self.model.drafter if k and self.options.drafter == "adapter" else None
        lookup = None
        if k and self.options.drafter == "context":
            lookup = ContextLookup(self.prompt.before, self.tok.encode(self.scored_suffix))
        live = [i for i, b in enumerate(branches) if b.text_end is None and not b.stopped]
        length = cache.positions.shape[1]
        valid = torch.ones(len(branches), length, dtype=torch.bool, device=self.device)
        next_pos = torch.full((len(branches),), length, device=self.device)
        drafts: list[list[int]] = [[] for _ in branches]
        cache, valid, next_pos = _rows(cache, live), valid[live], next_pos[live]
        while live:
            if self.options.deadline_s is not None and time.perf_counter() - self.start > self.options.deadline_s:
                self.deadline_hit = True
                return
            # Rows with shorter drafts are padded with a token the base never chooses (banned).
            m = max(len(drafts[i]) for i in live)
            pending = torch.tensor([[branches[i].tokens[-1]] + drafts[i] + [self.banned[0]] * (m - len(drafts[i]))
                                    for i in live], device=self.device)
            choice, conf, cache = self._verify(pending, cache, valid, next_pos)
            kept = [_agreeing(pending[j, 1:].tolist(), choice[j].tolist()) for j in range(len(live))]
            valid = torch.cat([valid, torch.tensor([[True] * (a + 1) + [False] * (m - a) for a in kept],
                                                   device=self.device)], dim=1)
            next_pos = next_pos + torch.tensor(kept, device=self.device) + 1
            for j, i in enumerate(live):
                a = kept[j]
                self._commit(branches[i], pending[j, 1 : a + 1].tolist() + [int(choice[j, a])], conf[j, : a + 1].tolist())
            if drafter is not None:
                guesses = self._draft(drafter, cache, valid, next_pos, [branches[i].tokens[-1] for i in live])
                for j, i in enumerate(live):
                    drafts[i] = guesses[j]
            elif lookup is not None:
                for i in live:
                    drafts[i] = lookup.draft(branches[i].tokens, k)
            for i in self._hopeless(branches, live):
                branches[i].stopped = branches[i].pruned = True
            keep = [j for j, i in enumerate(live) if branches[i].text_end is None and not branches[i].stopped]
            live = [live[j] for j in keep]
            if live and len(keep) < len(valid):
                cache, valid, next_pos = _rows(cache, keep), valid[keep], next_pos[keep]
            yield self._state(_common_prefix([b.tokens for b in branches]))

    @staticmethod
    def _hopeless(branches: list[Branch], live: list[int]) -> list[int]:
        """Live branches whose tokens are PRUNE_NATS less likely than the best live branch's over
        the same number of tokens: the suffix would have to make up a factor of e^PRUNE_NATS for
        one to win, and each costs a row of every pass until its block ends."""
        if len(live) < 2:
            return []
        n = min(len(branches[i].probs) for i in live)
        logp = {i: sum(math.log(max(p, 1e-30)) for p in branches[i].probs[:n]) for i in live}
        best = max(logp.values())
        return [i for i in live if logp[i] < best - PRUNE_NATS]

    @torch.inference_mode()
    def _verify(self, pending: Tensor, cache: KVCache, valid: Tensor, next_pos: Tensor) -> tuple[Tensor, Tensor, KVCache]:
        """The base over each row's pending tokens: its choice (and probability) after each, and
        the cache extended by their keys/values."""
        rows, width = pending.shape
        logits, extended = self.model.net(
            pending, positions=next_pos[:, None] + torch.arange(width, device=self.device), cache=cache,
            key_mask=_ones_after(valid, width), causal_until=next_pos + width, return_cache=True, extend_cache=True)
        self.stats.forward_passes += 1
        logits = logits.float()
        logits[..., self.banned] = float("-inf")
        choice, conf = propose(logits.flatten(0, 1), self.options, [], self.gen)
        return choice.view(rows, width), conf.view(rows, width), extended

    @torch.inference_mode()
    def _draft(self, drafter, cache: KVCache, valid: Tensor, next_pos: Tensor, newest: list[int]) -> list[list[int]]:
        """The drafter's guesses for the `draft_tokens` slots after each branch's newest token: a
        block from that token's position on, the token itself then masks (each row's output
        scores the slot after it). The newest token's keys/values are not in the cache yet (the
        base reads it in the next pass); the block reads it for itself and keeps nothing."""
        k = self.options.draft_tokens
        masks = torch.full((len(next_pos), k), self.tok.mask_id, device=self.device)
        masks[:, 0] = torch.tensor(newest, device=self.device)
        logits = drafter(masks, positions=next_pos[:, None] + torch.arange(k, device=self.device), cache=cache,
                         key_mask=_ones_after(valid, k), causal_until=next_pos).float()
        self.stats.drafter_passes += 1
        logits[..., self.banned + self.end_ids] = float("-inf")
        return logits.argmax(-1).tolist()

    def _commit(self, branch: Branch, tokens: list[int], probs: list[float]) -> None:
        """Append tokens to a branch until it ends (an end token, its shape, or max_tokens)."""
        for t, p in zip(tokens, probs):
            if branch.text_end is not None or branch.stopped:
                return
            if t in self.tok.stop_ids:
                branch.stopped = True
                return
            branch.tokens.append(t)
            branch.probs.append(p)
            self._check_end(branch)

    def _check_end(self, branch: Branch) -> None:
        text = self.hole_text(branch.tokens)
        shape = self.shape
        if shape.one_line:
            cut = text.find("\n")
            if cut >= 0:
                branch.text_end = cut + (1 if shape.line_start else 0)
        else:
            head = shape.line_head
            end = block_ended(head + text, single_line=False)
            end = None if end is None else max(0, end - len(head))
            if end is None and shape.max_lines is not None and text.count("\n") >= shape.max_lines:
                end = nth_line_end(text, shape.max_lines)
            reached = reaches_suffix(text, self.anchor)
            if reached is not None and (end is None or reached <= end):
                end, branch.reached_suffix = reached, True
            branch.text_end = end
        if branch.text_end is None and len(branch.tokens) >= self.options.max_tokens:
            branch.stopped = True

    # -- choosing the ending ----------------------------------------------------------------
    def candidates(self, branches: list[Branch]) -> list[tuple[str, int]]:
        """(candidate text, branch index), distinct and not blank, the greedy branch's first;
        never the excluded old text while another candidate exists. A branch that went on to
        write the suffix's first lines again has found where the hole ends: when one did, only
        such branches are candidates, each ending there (likelihood alone favours the shortest
        ending, and a block the base itself leads into the suffix is the better evidence)."""
        for reached_only in (True, False):
            out: list[tuple[str, int]] = []
            for i, b in enumerate(branches):
                if b.pruned or (reached_only and not b.reached_suffix):
                    continue
                text = self.hole_text(b.tokens)
                text = text[: b.text_end] if b.text_end is not None else text
                for cand in self._endings(text)[: 1 if reached_only else None]:
                    if cand.strip() and cand not in [c for c, _ in out]:
                        out.append((cand, i))
            fresh = [(c, i) for c, i in out if c != self.exclude]
            if fresh or (out and not reached_only):
                return (fresh or out)[:MAX_CANDIDATES]
        return []

    def _endings(self, text: str) -> list[str]:
        shape = self.shape
        if shape.rest_of_line.strip():
            return mid_line_endings(text, shape.rest_of_line)
        if shape.one_line:
            return [text]
        if not shape.line_start:  # the suffix already starts with the cursor line's newline
            return [t[:-1] if t.endswith("\n") else t for t in block_endings(text, shape.line_head)]
        return block_endings(text, shape.line_head)

    @torch.inference_mode()
    def score(self, endings: list[Ending]) -> list[Ending]:
        """Each ending with the base's log p of lead + its text and of the suffix head after it
        (cut to its first SCORED_SUFFIX_TOKENS tokens, the same text for every one), all in one pass."""
        tok = self.tok
        seqs = [tok.encode(self.prompt.lead + e.text + self.scored_suffix) for e in endings]
        cache, last = self.prompt_kv, self.prompt_last
        width = max(map(len, seqs))
        batch = torch.full((len(seqs), width), tok.eos_id, dtype=torch.long, device=self.device)
        for i, s in enumerate(seqs):
            batch[i, : len(s)] = torch.tensor(s)
        start = cache.positions.shape[1]
        raw = self.model.net(batch, positions=torch.arange(start, start + width, device=self.device),
                             cache=_rows(cache, [0] * len(seqs)), causal_until=start + width)
        self.stats.forward_passes += 1
        scored = []
        for e, row, seq in zip(endings, raw, seqs):  # one row at a time: a [rows, width, vocab] float copy is large
            logp = torch.log_softmax(torch.cat([last[None], row[: len(seq) - 1].float()]), dim=-1)
            per_token = logp.gather(1, torch.tensor(seq, device=self.device)[:, None])[:, 0].tolist()
            head = tok.encode(self.prompt.lead + e.text)
            k = len(head) if seq[: len(head)] == head else len(head) - 1  # a token may straddle the seam
            scored.append(dataclasses.replace(e, text_logp=sum(per_token[:k]), suffix_logp=sum(per_token[k:]),
                                              text_tokens=k, suffix_tokens=len(seq) - k))
        return scored

    def _finish(self, branches: list[Branch]) -> Completion:
        cands = self.candidates(branches)
        endings = [Ending(text, owner) for text, owner in cands]
        if len(endings) > 1 and self.scored_suffix:
            endings = self.score(endings)
            best = best_ending(endings, self.options.ending or default_rule(self.shape.one_line))
            best_text, owner = best.text, best.branch
        elif cands:
            best_text, owner = cands[0]
        else:
            best_text, owner = "", 0
        b = branches[owner]
        ids = self.tok.encode(best_text)
        skip = len(self.prompt.lead) if self.tok.decode(b.tokens).startswith(self.prompt.lead) else 0
        conf = carry_confidences(self.tok, b.tokens, b.probs, ids, skip)
        self.stats.tokens = len(ids)
        self.stats.wall_s = time.perf_counter() - self.start
        return Completion(best_text, ids, conf, self.stats, self.deadline_hit, endings)

    def _state(self, committed: list[int]) -> HoleState:
        """The live view: what every branch agrees on, then the frontier (masked)."""
        self.stats.wall_s = time.perf_counter() - self.start
        self.stats.tokens = len(committed)
        return HoleState(committed + [self.tok.mask_id], [1.0] * len(committed) + [0.0], self.tok.mask_id, self.stats,
                         self.deadline_hit)


def _rows(cache: KVCache, rows: list[int]) -> KVCache:
    """The cache of the given batch rows. Rows continuing the one-row prompt share its
    keys/values (KVCache.shared_by): each pass then appends to the rows' own short tails only."""
    if cache.shared_keys is None and set(rows) == {0}:  # the prompt's one-row cache
        return cache.shared_by(len(rows))
    return cache.rows(torch.tensor(rows, dtype=torch.long, device=cache.positions.device))


def _first_tokens(tok, text: str, n: int) -> str:
    """The part of `text` its first `n` tokens cover."""
    ids = tok.encode(text)
    return text if len(ids) <= n else text[: tok.char_spans(ids)[n - 1][1]]


def _ones_after(valid: Tensor, n: int) -> Tensor:
    """The key mask of a pass: the cache's valid slots, then `n` new positions."""
    return torch.cat([valid, torch.ones(valid.shape[0], n, dtype=torch.bool, device=valid.device)], dim=1)


def _agreeing(guesses: list[int], choices: list[int]) -> int:
    """How many leading guesses equal the base's own choices (choice j follows guess j)."""
    n = 0
    while n < len(guesses) and guesses[n] == choices[n]:
        n += 1
    return n


def _common_prefix(seqs: list[list[int]]) -> list[int]:
    out: list[int] = []
    for column in zip(*seqs):
        if any(t != column[0] for t in column):
            break
        out.append(column[0])
    return out


def prompt_budget(model: LoadedModel, reserve: int) -> int:
    """Tokens the prompt may take: the context length less the hole and the scored suffix lines."""
    return model.config.max_seq_len - reserve - SUFFIX_ROOM


def anchored_infill_stream(
    model: LoadedModel,
    prefix: str,
    suffix: str,
    *,
    path: str | None = None,
    context: Sequence[tuple[str, str]] = (),
    options: DecodeOptions | None = None,
    headed: bool = True,
) -> Iterator[HoleState | Completion]:
    """Yield the hole's committed part after every pass, then the final Completion."""
    options = options or DecodeOptions()
    prompt = anchored_prompt(model.tokenizer, prefix, path, context, prompt_budget(model, options.max_tokens), headed)
    shape = hole_shape(prefix, suffix, options.max_lines)
    yield from AnchoredDecoder(model, prompt, shape, options).run()


def anchored_refine_stream(
    model: LoadedModel,
    prefix: str,
    suffix: str,
    draft: Completion,
    *,
    remask: int | None = None,
    lines: tuple[int, int] | None = None,
    path: str | None = None,
    context: Sequence[tuple[str, str]] = (),
    options: DecodeOptions | None = None,
) -> Iterator[HoleState | Completion]:
    """Revise a draft in place. remask=k: the k least confident tokens are masked again, and so is
    everything after the first of them (the base decides left to right); the text before stays
    clean, read from the prefix cache. lines=(a, b): those lines of the draft become the hole.
    The candidates branch where the hole starts and the suffix chooses, never the old text while
    another candidate exists."""
    options = options or DecodeOptions()
    tok = model.tokenizer
    text, ids = draft.text, list(draft.token_ids)
    if lines is not None:
        start, end = line_bounds(text, *lines)
    else:
        k = max(1, min(remask if remask is not None else max(1, len(ids) // 4), len(ids)))
        first = min(sorted(range(len(ids)), key=lambda i: draft.confidences[i])[:k])
        start, end = tok.char_spans(ids)[first][0], len(text)
    before, after = tok.encode(text[:start]), tok.encode(text[end:])
    kept_before = carry_confidences(tok, ids, draft.confidences, before, 0)
    kept_after = carry_confidences(tok, ids, draft.confidences, after, end)
    options = dataclasses.replace(options, max_lines=None, best_of=options.best_of or REFINE_BEST_OF)
    prompt = anchored_prompt(tok, prefix + text[:start], path, context, prompt_budget(model, options.max_tokens))
    decoder = AnchoredDecoder(model, prompt, hole_shape(prefix + text[:start], text[end:] + suffix, None), options,
                              exclude=text[start:end])
    for item in decoder.run():
        if isinstance(item, Completion):
            yield Completion(text[:start] + item.text + text[end:], before + item.token_ids + after,
                             kept_before + item.confidences + kept_after, item.stats, item.deadline_hit)
        else:
            yield HoleState(before + item.tokens + after, kept_before + item.confidences + kept_after, item.mask_id,
                            item.stats, item.deadline_hit)


def anchored_infill(model: LoadedModel, prefix: str, suffix: str, **kwargs) -> Completion:
    return last_completion(anchored_infill_stream(model, prefix, suffix, **kwargs))
