"""The engine API the CLI, evaluation and editors call: infill, generate, refine.

Prompt layout (what the model was trained on): each context file as `<|file|>path\\n` + text,
then the edited file as `<|file|>path\\n` + prefix + [MASK]*L + suffix + `<|endoftext|>`.
A model with `prompt_format = "fim"` (dcode-small) puts the suffix first:
context files, `<fim_suffix>` suffix `<fim_prefix>` `<file_sep>path\\n` prefix, then the hole.
With `token_healing`, the prefix's last token and the suffix's first are backed off and the hole
re-covers their text (its first slot may only take a token that starts it); the result drops
that text again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

from dcode.diffusion.anchored import anchored_infill_stream, anchored_prompt, anchored_refine_stream, prompt_budget
from dcode.diffusion.completion import Completion, Prompt, carry_confidences, heal, last_completion, line_bounds
from dcode.diffusion.sampler import Canvas, DecodeOptions, DecodeStats, HoleState, denoise
from dcode.errors import InputError
from dcode.model.loaded import LoadedModel

DEFAULT_INFILL_TOKENS = 32
DEFAULT_GENERATE_BLOCK = 32


FIM_PREFIX, FIM_SUFFIX = "<fim_prefix>", "<fim_suffix>"


def build_prompt(
    model: LoadedModel,
    prefix: str,
    suffix: str,
    *,
    path: str | None = None,
    context: Sequence[tuple[str, str]] = (),
    reserve: int = 0,
    instruction: str | None = None,
) -> Prompt:
    """Token ids before and after the hole, cut to fit the model's context length.

    `reserve` tokens are kept free for the hole. When it does not fit, whole context files go
    first (the last ones, which the context ranking put last), then the far ends of the prefix
    and suffix. An `instruction` needs a model with a chat template (see `has_chat_template`).
    """
    tok = model.tokenizer
    budget = model.config.max_seq_len - reserve
    if budget <= 0:
        raise InputError(f"the hole ({reserve} tokens) does not fit the model's context of {model.config.max_seq_len}")
    if instruction is not None:
        return _chat_prompt(model, prefix, suffix, path, context, budget, instruction)
    if model.config.decoder == "anchored":
        return anchored_prompt(tok, prefix, path, context, prompt_budget(model, reserve))
    if model.config.prompt_format == "fim":
        return _fim_prompt(model, prefix, suffix, path, context, budget)
    head = [tok.bos_id] if tok.bos_id is not None else []
    file_ids = tok.encode_file_header(path or "untitled") + tok.encode(prefix)
    after = tok.encode(suffix) + [tok.eos_id]
    ctx = [tok.encode_file_header(p) + tok.encode(text) for p, text in context]
    while ctx and len(head) + sum(map(len, ctx)) + len(file_ids) + len(after) > budget:
        ctx.pop()
    file_ids, after = _keep_near_hole(file_ids, after, budget - len(head) - sum(map(len, ctx)))
    return Prompt(head + [i for c in ctx for i in c] + file_ids, after)


def _fim_prompt(
    model: LoadedModel, prefix: str, suffix: str, path: str | None, context: Sequence[tuple[str, str]], budget: int
) -> Prompt:
    return fim_prompt(model.tokenizer, prefix, suffix, path, context, budget, model.config.token_healing)


def fim_prompt(
    tok, prefix: str, suffix: str, path: str | None, context: Sequence[tuple[str, str]], budget: int, healing: bool
) -> Prompt:
    """Context files, `<fim_suffix>` suffix, `<fim_prefix>` file header + prefix; the hole follows.
    Context files go first when short of room, then the far ends of prefix and suffix. Training
    (dcode.train.adapt) builds its examples with this same function."""
    pre, suf, lead, trail = tok.encode(prefix), tok.encode(suffix), "", ""
    if healing:
        pre, suf, lead, trail = heal(tok, pre, suf)
    header = tok.encode_file_header(path or "untitled")
    frame = [tok.token_id(FIM_SUFFIX), tok.token_id(FIM_PREFIX)]
    ctx = [tok.encode_file_header(p) + tok.encode(text) for p, text in context]
    while ctx and sum(map(len, ctx)) + len(frame) + len(header) + len(pre) + len(suf) > budget:
        ctx.pop()
    pre, suf = _keep_near_hole(pre, suf, budget - sum(map(len, ctx)) - len(frame) - len(header))
    before = [i for c in ctx for i in c] + frame[:1] + suf + frame[1:] + header + pre
    return Prompt(before, [], lead, trail)


def _keep_near_hole(before: list[int], after: list[int], room: int) -> tuple[list[int], list[int]]:
    """Cut the far ends so both sides fit `room`: at most half the room for each side, the rest
    to whichever side needs it."""
    if len(before) + len(after) <= room:
        return before, after
    keep_after = min(len(after), max(room // 2, room - len(before)))
    keep_before = room - keep_after
    return (before[len(before) - keep_before :] if keep_before > 0 else []), (after[:keep_after] if keep_after > 0 else [])


def has_chat_template(model: LoadedModel) -> bool:
    return model.family in ("dream", "llada")


def instruction_message(instruction: str, path: str | None, context: Sequence[tuple[str, str]]) -> str:
    """The user turn of an instructed fill: the instruction, then the project files as context."""
    parts = [instruction.strip(), f"Reply with the whole of {path or 'the file'} in one code block."]
    parts += [f"{p} (another file of the project):\n```\n{text.rstrip()}\n```" for p, text in context]
    return "\n\n".join(parts)


def _chat_prompt(
    model: LoadedModel, prefix: str, suffix: str, path: str | None, context: Sequence[tuple[str, str]], budget: int,
    instruction: str,
) -> Prompt:
    from dcode.model.hf_tokenizers import chat_infill_frame

    if not has_chat_template(model):
        raise InputError(f"{model.name} has no chat template, so it cannot take an instruction this way")
    tok = model.tokenizer
    before, after = tok.encode(prefix), tok.encode(suffix)
    kept = list(context)
    while True:
        head, tail = chat_infill_frame(tok, model.family, instruction_message(instruction, path, kept))
        if not kept or len(head) + len(before) + len(after) + len(tail) <= budget:
            break
        kept.pop()
    room = budget - len(head) - len(tail)
    if room < 0:
        raise InputError(f"the instruction does not fit the model's context of {model.config.max_seq_len} tokens")
    before, after = _keep_near_hole(before, after, room)
    return Prompt(head + before, after + tail)


def _finish(model: LoadedModel, state: HoleState, prompt: Prompt | None = None) -> Completion:
    """Drop pads; cut at the first end-of-text or stop token; drop the healed text again."""
    tok = model.tokenizer
    ids: list[int] = []
    conf: list[float] = []
    for t, c in zip(state.tokens, state.confidences):
        if t == tok.pad_id:
            continue
        if t in tok.stop_ids:
            break
        ids.append(t)
        conf.append(c)
    if prompt is not None and (prompt.lead or prompt.trail):
        return _unheal(tok, ids, conf, prompt, state)
    return Completion(tok.decode(ids), ids, conf, state.stats, state.deadline_hit)


def _unheal(tok, ids: list[int], conf: list[float], prompt: Prompt, state: HoleState) -> Completion:
    """The hole's text without the backed-off lead/trail, re-encoded on its own so that its ids
    decode to exactly the text."""
    text = tok.decode(ids)
    start = len(prompt.lead) if text.startswith(prompt.lead) else 0
    end = len(text) - len(prompt.trail) if prompt.trail and text[start:].endswith(prompt.trail) else len(text)
    new_ids = tok.encode(text[start:end])
    return Completion(text[start:end], new_ids, carry_confidences(tok, ids, conf, new_ids, start),
                      state.stats, state.deadline_hit)


def _first_allowed(model: LoadedModel, prompt: Prompt) -> list[int] | None:
    return model.tokenizer.extending(prompt.lead.encode("utf-8")) if prompt.lead else None


def _run(
    model: LoadedModel, canvas: Canvas, options: DecodeOptions, prompt: Prompt | None = None, **flags
) -> Iterator[HoleState | Completion]:
    last: HoleState | None = None
    first_allowed = _first_allowed(model, prompt) if prompt is not None else None
    for state in denoise(model, canvas, options, first_allowed=first_allowed, **flags):
        last = state
        if not state.done:
            yield state
    assert last is not None
    yield _finish(model, last, prompt)


def infill_stream(
    model: LoadedModel,
    prefix: str,
    suffix: str,
    *,
    path: str | None = None,
    context: Sequence[tuple[str, str]] = (),
    options: DecodeOptions | None = None,
    instruction: str | None = None,
) -> Iterator[HoleState | Completion]:
    """Yield the hole after every pass, then the final Completion."""
    options = options or DecodeOptions()
    if model.config.decoder == "anchored" and instruction is None:
        yield from anchored_infill_stream(model, prefix, suffix, path=path, context=context, options=options)
        return
    length = min(options.initial_tokens or DEFAULT_INFILL_TOKENS, options.max_tokens)
    prompt = build_prompt(model, prefix, suffix, path=path, context=context, reserve=options.max_tokens,
                          instruction=instruction)
    if getattr(model.tokenizer, "expand_id", None) is not None:
        yield _dreamon(model, prompt, options)
        return
    canvas = Canvas.build(prompt.before, [model.tokenizer.mask_id] * length, prompt.after, model.tokenizer.mask_id, model.device)
    yield from _run(model, canvas, options, prompt)


def _dreamon(model: LoadedModel, prompt: Prompt, options: DecodeOptions) -> Completion:
    """DreamOn checkpoints grow and shrink the hole themselves (`<|expand|>` / end-of-text), one
    token per step, so they run their own loop (see dcode.diffusion.compat)."""
    from dcode.diffusion.compat import dreamon_infill

    tok = model.tokenizer
    # dreamon_infill adds its own BOS and trailing end-of-text.
    before = prompt.before[1:] if tok.bos_id is not None and prompt.before[:1] == [tok.bos_id] else prompt.before
    after = prompt.after[:-1] if prompt.after[-1:] == [tok.eos_id] else prompt.after
    start = time.perf_counter()
    steps = [0]
    ids = dreamon_infill(
        model, before, after, max_new_tokens=options.max_tokens,
        temperature=options.temperature, top_p=options.top_p if options.top_p < 1 else None,
        on_step=lambda canvas: steps.__setitem__(0, steps[0] + 1),
    )
    ids = [i for i in ids if i not in model.tokenizer.stop_ids]
    stats = DecodeStats(forward_passes=steps[0], tokens=len(ids), wall_s=time.perf_counter() - start)
    # The DreamOn loop does not report per-token probabilities.
    return Completion(model.tokenizer.decode(ids), ids, [1.0] * len(ids), stats)


def generate_stream(
    model: LoadedModel, prompt: str | list[int], options: DecodeOptions | None = None
) -> Iterator[HoleState | Completion]:
    """Continue `prompt` (text, or ready-made ids such as a chat template) until an end token."""
    options = options or DecodeOptions()
    if options.block_size is None:
        options = dataclasses.replace(options, block_size=DEFAULT_GENERATE_BLOCK)
    tok = model.tokenizer
    if isinstance(prompt, str):
        ids = ([tok.bos_id] if tok.bos_id is not None else []) + tok.encode(prompt)
    else:
        ids = list(prompt)
    limit = model.config.max_seq_len - options.max_tokens
    if limit <= 0:
        raise InputError(f"max_tokens {options.max_tokens} does not fit the model's context of {model.config.max_seq_len}")
    ids = ids[-limit:]
    length = min(options.initial_tokens or options.block_size, options.max_tokens)
    canvas = Canvas.build(ids, [tok.mask_id] * length, [], tok.mask_id, model.device)
    yield from _run(model, canvas, options)


def refine_stream(
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
    instruction: str | None = None,
) -> Iterator[HoleState | Completion]:
    """Revise a finished draft in place, everything else fixed.

    remask=k: re-mask the draft's k least confident tokens and denoise them again (same slots).
    lines=(a, b): regenerate the draft's lines a..b (1-based, inclusive) as a fresh hole that
        may come out shorter or longer.
    """
    options = options or DecodeOptions()
    tok = model.tokenizer
    ids, conf = list(draft.token_ids), list(draft.confidences)
    if not ids:
        raise InputError("nothing to refine: the proposal is empty")
    if model.config.decoder == "anchored" and instruction is None:
        yield from anchored_refine_stream(model, prefix, suffix, draft, remask=remask, lines=lines, path=path,
                                          context=context, options=options)
        return
    prompt = build_prompt(model, prefix, suffix, path=path, context=context, reserve=len(ids) + options.max_tokens,
                          instruction=instruction)
    if lines is not None:
        first, last = _line_token_range(model, ids, lines)
        slack = max(8, (last - first) // 2)
        # The chosen lines become a hole of their own (pads, growth and blocks apply); the rest
        # of the draft is fixed context on either side.
        # Inside the draft, the hole's ends are the draft's own token boundaries: nothing to heal.
        lead, trail = tok.encode(prompt.lead), tok.encode(prompt.trail)
        canvas = Canvas.build(
            prompt.before + lead + ids[:first], [tok.mask_id] * (last - first + slack),
            ids[last:] + trail + prompt.after, tok.mask_id, model.device,
        )
        inner_options = dataclasses.replace(options, max_tokens=max(options.max_tokens, last - first + slack))
        for item in _run(model, canvas, inner_options):
            if isinstance(item, Completion):
                yield Completion(
                    tok.decode(ids[:first] + item.token_ids + ids[last:]),
                    ids[:first] + item.token_ids + ids[last:],
                    conf[:first] + item.confidences + conf[last:],
                    item.stats,
                    item.deadline_hit,
                )
            else:
                yield HoleState(
                    ids[:first] + item.tokens + ids[last:], conf[:first] + item.confidences + conf[last:],
                    item.mask_id, item.stats, item.deadline_hit,
                )
        return
    k = remask if remask is not None else max(1, len(ids) // 4)
    k = max(1, min(k, len(ids)))
    if prompt.lead or prompt.trail:
        ids, conf = _healed_draft(tok, prompt, draft)
    order = sorted(range(len(ids)), key=lambda i: conf[i])[:k]
    hole = list(ids)
    for i in order:
        hole[i] = tok.mask_id
    canvas = Canvas.build(prompt.before, hole, prompt.after, tok.mask_id, model.device)
    # Kept tokens keep the confidence they were committed with.
    hs = canvas.hole_start
    canvas.confidence[hs : canvas.hole_end] = canvas.confidence.new_tensor(conf)
    canvas.confidence[canvas.editable] = 0.0
    yield from _run(model, canvas, options, prompt, grow=False, end_fills_rest=False)


def _healed_draft(tok, prompt: Prompt, draft: Completion) -> tuple[list[int], list[float]]:
    """The draft as the hole of a healed prompt holds it: lead + text + trail, encoded as one
    text; tokens inside the healed ends count as certain."""
    ids = tok.encode(prompt.lead + draft.text + prompt.trail)
    # Seen from the draft, the new text starts len(lead) characters before it.
    conf = carry_confidences(tok, draft.token_ids, draft.confidences, ids, -len(prompt.lead))
    return ids, conf


def _line_token_range(model: LoadedModel, ids: list[int], lines: tuple[int, int]) -> tuple[int, int]:
    """Token index range [first, last) covering lines a..b of the decoded draft."""
    a, b = lines
    lo, hi = line_bounds(model.tokenizer.decode(ids), a, b)
    spans = model.tokenizer.char_spans(ids)
    covered = [i for i, (s, e) in enumerate(spans) if s < hi and e > lo]
    if not covered:
        raise InputError(f"lines {a}-{b} of the proposal hold no tokens")
    return covered[0], covered[-1] + 1


def infill(model: LoadedModel, prefix: str, suffix: str, **kwargs) -> Completion:
    return last_completion(infill_stream(model, prefix, suffix, **kwargs))


def generate(model: LoadedModel, prompt: str | list[int], options: DecodeOptions | None = None) -> Completion:
    return last_completion(generate_stream(model, prompt, options))


def refine(model: LoadedModel, prefix: str, suffix: str, draft: Completion, **kwargs) -> Completion:
    return last_completion(refine_stream(model, prefix, suffix, draft, **kwargs))
