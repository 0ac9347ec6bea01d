"""The data path shared by every front end (CLI, editors, hook):
request -> target -> context -> prompt tokens -> sampler -> proposal -> diff -> apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from dcode.context.gather import gather_context
from dcode.context.index import RepoIndex, find_repo_root
from dcode.context.languages import Language
from dcode.context.result import ContextResult
from dcode.diffusion.engine import Completion, has_chat_template, infill_stream, refine_stream
from dcode.diffusion.sampler import DecodeOptions, HoleState
from dcode.edit.check import SyntaxCheck, check_syntax, filled_span, fill_problem, region_error
from dcode.edit.files import content_hash, encode_source
from dcode.edit.proposal import Proposal
from dcode.edit.targets import Target, resolve_target, scope_exit, target_in_text
from dcode.errors import InputError, NoEditError
from dcode.model.loader import LoadedModel
from dcode.remote.model import ESTIMATED_COUNTS, RemoteCompletion, RemoteModel, regenerated_note
from dcode.settings import Settings

Model = LoadedModel | RemoteModel  # what the workflow generates with; `generator` tells them apart

DEFAULT_FILL_TOKENS = 32
DEFAULT_WRITE_TOKENS = 64
FUNCTION_KINDS = ("function", "method")
# A fill or write is asked for code: its first slots may not end the hole or stay blank.
MIN_FILL_TOKENS = 2
FILL_ATTEMPTS = 3
UNVERIFIED_ADVICE = "refine it or reject it"  # ends the note on why a proposal is not verified
INDENT = re.compile(r"[ \t]*")


@dataclass
class Request:
    """What to generate: a target spec and whether to fill a hole or write a function body."""

    spec: str
    mode: str = "fill"  # "fill" or "write"
    instruction: str | None = None  # what the code should do, in the user's words


def resolve(request: Request) -> Target:
    target = resolve_target(request.spec)
    if request.mode != "write" or target.kind == "symbol":
        return target
    functions = [s for s in target.scopes if s.kind in FUNCTION_KINDS]
    if not functions:
        raise InputError(f"{request.spec}: not inside a function or method; `dcode write` needs one")
    return resolve_target(f"{target.path}::{functions[-1].qualname}")


class LocalEngine:
    """A loaded model's generation (dcode.diffusion.engine) behind the calls a RemoteModel answers."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.chat_template = has_chat_template(model)

    def infill_stream(self, prefix: str, suffix: str, **kwargs) -> Iterator[HoleState | Completion]:
        return infill_stream(self.model, prefix, suffix, **kwargs)

    def refine_stream(self, prefix: str, suffix: str, draft: Completion, **kwargs) -> Iterator[HoleState | Completion]:
        return refine_stream(self.model, prefix, suffix, draft, **kwargs)

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer.encode(text))


def generator(model: Model) -> LocalEngine | RemoteModel:
    """The one place the workflow asks what generates: a model on a server does it itself (see
    `dcode.remote`), a loaded one through the local engine."""
    return model if isinstance(model, RemoteModel) else LocalEngine(model)


def refines_in_place(model: Model) -> bool:
    """Whether `refine` re-masks a draft's tokens; a server without in-place refinement
    regenerates lines instead, so the UI must not promise re-masking."""
    return not isinstance(model, RemoteModel) or model.protocol.refines


def server_notes(result: Completion) -> list[str]:
    """What a server's completion says the user should know (e.g. that it sent no confidences)."""
    return list(result.notes) if isinstance(result, RemoteCompletion) else []


def rel_path(target: Target, root: Path) -> str:
    try:
        return target.path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return target.path.name


def context_for(
    target: Target, model: Model, settings: Settings, progress: Callable[[int, int], None] | None = None
) -> tuple[Path, ContextResult]:
    """Repository root and the budgeted context for a target: the same whether the model is loaded
    here or on a server (its window, counted in its own tokens)."""
    root = find_repo_root(target.path.parent)
    index = RepoIndex.open(root, progress=progress)
    reserve = settings.max_tokens + 16
    budget = max(64, min(settings.context_budget, model.config.max_seq_len - reserve))
    result = gather_context(target, index, budget, generator(model).count_tokens)
    if isinstance(model, RemoteModel) and not model.counts_exactly:
        result.notes.append(ESTIMATED_COUNTS)
    return root, result


def initial_tokens(target: Target, mode: str, count_tokens: Callable[[str], int], max_tokens: int) -> int:
    """The hole's first size: a region being rewritten starts at its own length (plus room)."""
    existing = target.text[target.start : target.end]
    if mode == "write":
        guess = DEFAULT_WRITE_TOKENS
    elif existing.strip() and target.kind in ("line", "range", "position", "syntax_error"):
        guess = count_tokens(existing) + 8
    else:
        guess = DEFAULT_FILL_TOKENS
    return min(guess, max_tokens)


def fill_options(
    target: Target, mode: str, settings: Settings, count_tokens: Callable[[str], int], **overrides
) -> DecodeOptions:
    """Decoding options for a fill or write of `target`: the settings, the hole's first size, and
    first slots that must hold code."""
    return settings.decode_options(
        initial_tokens=initial_tokens(target, mode, count_tokens, settings.max_tokens),
        min_tokens=min(MIN_FILL_TOKENS, settings.max_tokens), **overrides,
    )


def propose(
    request: Request,
    model: Model,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[HoleState | Proposal]:
    """Yield the hole after every pass, then the finished Proposal, verified (it parses, and a
    fill in a definition is in it): up to FILL_ATTEMPTS candidates (greedy first, then sampled
    with other seeds); when none is verified the last one comes back with its `problem` and a note."""
    yield from propose_verified(resolve(request), request.mode, model, settings, progress, request.instruction)


def propose_verified(
    target: Target,
    mode: str,
    model: Model,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    instruction: str | None = None,
) -> Iterator[HoleState | Proposal]:
    """`propose` for an already resolved target (the language server makes them from an
    editor's buffer, which need not match the file on disk)."""
    proposal: Proposal | None = None
    failure: NoEditError | None = None
    for attempt in range(FILL_ATTEMPTS):
        overrides = {} if attempt == 0 else {"seed": settings.seed + attempt, "temperature": max(settings.temperature, 0.8)}
        try:
            stream = propose_target(target, mode, model, settings, progress, instruction, **overrides)
            for item in stream:
                if isinstance(item, Proposal):
                    proposal = item
                else:
                    yield item
        except NoEditError as err:
            failure = err
            continue
        assert proposal is not None
        verify(proposal, target)
        if proposal.problem is None:
            yield proposal
            return
    if proposal is None:
        assert failure is not None
        raise failure
    note_verdict(proposal, FILL_ATTEMPTS)
    yield proposal


def verify(proposal: Proposal, target: Target) -> None:
    """Judge a proposal for `target` (whose text is the file it was made for), as every front end
    does before anything is applied: set `parses` (no more syntax errors than before, and none
    where it was filled), `problem` (keeping one the caller found: code outside its definition;
    else a parse failure, else `fill_problem`'s), and the note that says why it is not verified."""
    text, language = target.text, target.language
    new = proposal.new_text(text)
    after = check_syntax(new, language)
    region = region_error(after, new, *filled_span(target, new), language)
    proposal.parses = no_worse(check_syntax(text, language), after) and region is None
    if proposal.problem is None and not proposal.parses:
        proposal.problem = "does not parse" + (f" where it was filled ({region})" if region else "")
    if proposal.problem is None:
        proposal.problem = fill_problem(target, new)
    note_verdict(proposal)


def note_verdict(proposal: Proposal, tries: int = 1) -> None:
    """The one note on why the proposal is not verified (after `tries` candidates), replacing an
    earlier verdict's; none when it is verified."""
    proposal.notes = [n for n in proposal.notes if not n.endswith(UNVERIFIED_ADVICE)]
    if proposal.problem is not None:
        best = f" (best of {tries} candidates)" if tries > 1 else ""
        proposal.notes.append(f"the proposal {proposal.problem}{best}; {UNVERIFIED_ADVICE}")


def hole_target(proposal: Proposal, text: str) -> Target:
    """A proposal's hole in `text` as a target again, for the checks its first pass had."""
    return replace(target_in_text(proposal.path, text, proposal.start), end=proposal.end, kind=proposal.kind)


def keeps_parsing(before_text: str, after_text: str, language: Language) -> bool:
    """The edited file has no more syntax errors than the original (see `no_worse`)."""
    return no_worse(check_syntax(before_text, language), check_syntax(after_text, language))


def no_worse(before: SyntaxCheck, after: SyntaxCheck) -> bool:
    """No more syntax errors than before (and, for Python, it compiles whenever the original did)."""
    if after.errors > before.errors:
        return False
    return after.compile_error is None or before.compile_error is not None


def propose_target(
    target: Target,
    mode: str,
    model: Model,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
    instruction: str | None = None,
    **option_overrides,
) -> Iterator[HoleState | Proposal]:
    """`propose` for an already resolved target (the hook gets them from `find_holes`)."""
    root, ctx = context_for(target, model, settings, progress)
    path = rel_path(target, root)
    options = fill_options(target, mode, settings, generator(model).count_tokens, **option_overrides)
    context = [(c.path, c.text) for c in ctx.chunks]
    notes = list(ctx.notes) + (["context was truncated to fit the budget"] if ctx.truncated else [])
    # ctx.prefix / ctx.suffix are the file's own text around the hole, cut to the budget.
    prefix, chat_instruction = instructed(target, ctx.prefix, instruction, model)
    stream = generator(model).infill_stream(prefix, ctx.suffix, path=path, context=context, options=options,
                                            instruction=chat_instruction)
    for item in stream:
        if isinstance(item, HoleState):
            yield item
            continue
        item, note, outside = fit_to_scope(target, at_marker_indent(target, item, model.tokenizer), model.tokenizer)
        proposal = finish(
            Proposal(
                path=target.path.resolve(), root=root, rel_path=path,
                file_hash=content_hash(encode_source(target.path, target.text)), start=target.start, end=target.end,
                kind=target.kind, model=model.name, token_ids=[], confidences=[], fill="",
                context=context, notes=notes + server_notes(item) + ([note] if note else []), instruction=instruction,
            ),
            item,
            first=True,
        )
        proposal.problem = outside
        yield proposal


def instructed(target: Target, prefix: str, instruction: str | None, model: Model) -> tuple[str, str | None]:
    """(prefix, instruction for the engine's chat framing): a model with a chat template reads the
    instruction in a user turn; any other model sees it as a comment on its own line just above
    the hole's line, which is how code states what comes next (the comment is not written)."""
    if instruction is None or generator(model).chat_template:
        return prefix, instruction
    line_start = prefix.rfind("\n") + 1
    indent = INDENT.match(target.text, target.text.rfind("\n", 0, target.start) + 1).group()
    lang = target.language
    if lang.line_comments:
        comment = "".join(f"{indent}{lang.line_comments[0]} {text}\n" for text in instruction.strip().splitlines())
    elif lang.block_comments:
        opener, closer = lang.block_comments[0]
        comment = f"{indent}{opener} {instruction.strip()} {closer}\n"
    else:
        comment = f"{indent}{instruction.strip()}\n"
    return prefix[:line_start] + comment + prefix[line_start:], None


def at_marker_indent(target: Target, result: Completion, tokenizer) -> Completion:
    """A marker's fill at the marker's own indentation. The hole is the whole marker line, so the
    model writes the indentation itself, and not always the file's (spaces for a tab); the fill's
    first line is moved to the marker's indentation and every line at least as deep moves with
    it. In Python a first line at column 0 under an indented marker is left alone: that is code
    outside the marker's block, for the scope check to judge. The text is re-encoded; each new
    token takes the lowest confidence of the tokens it comes from."""
    first = next((line for line in result.text.splitlines() if line.strip()), None)
    if target.kind != "marker" or first is None:
        return result
    own = INDENT.match(first).group()
    if own == target.indent or (not own and target.language.name == "python"):
        return result
    lines: list[str] = []
    origin: list[int] = []  # for each new character, the old one it comes from
    position = 0
    for line in result.text.splitlines(keepends=True):
        if line.strip() and line.startswith(own):
            lines.append(target.indent + line[len(own) :])
            origin += [position] * len(target.indent) + list(range(position + len(own), position + len(line)))
        else:
            lines.append(line)
            origin += list(range(position, position + len(line)))
        position += len(line)
    owner = [k for k, (a, b) in enumerate(tokenizer.char_spans(result.token_ids)) for _ in range(a, b)]
    ids = tokenizer.encode("".join(lines))
    confidences = [min((result.confidences[owner[origin[i]]] for i in range(a, b)), default=1.0)
                   for a, b in tokenizer.char_spans(ids)]  # fmt: skip
    return replace(result, text="".join(lines), token_ids=ids, confidences=confidences)


def fit_to_scope(target: Target, result: Completion, tokenizer) -> tuple[Completion, str | None, str | None]:
    """(the completion cut where it leaves the hole's definition, a note on what was cut, the
    problem when none of it is inside: then it is left whole, for the user to see)."""
    cut = scope_exit(target, result.text)
    if cut is None:
        return result, None, None
    owner = target.scopes[-1].qualname or target.scopes[-1].name
    if not result.text[:cut].strip():
        return result, None, f"is outside {owner}"
    dropped = result.text[cut:].strip().count("\n") + 1
    return result.cut(cut, tokenizer), f"dropped {dropped} line(s) the model wrote past the end of {owner}", None


def finish(proposal: Proposal, result: Completion, first: bool = False) -> Proposal:
    updated = proposal.with_completion(result)
    if first:
        updated.passes = 1
    if not result.text.strip():
        raise NoEditError(f"{proposal.rel_path}: the model produced no code for this hole")
    return updated


def refine(
    proposal: Proposal,
    model: Model,
    settings: Settings,
    remask: int | None = None,
    lines: tuple[int, int] | None = None,
    text: str | None = None,
) -> Iterator[HoleState | Proposal]:
    """One refinement pass over a pending proposal; `text` is the file it was made for (default:
    read from disk, which must not have changed since; an editor passes its buffer)."""
    if proposal.model != model.name:
        raise InputError(f"the pending proposal was made by {proposal.model}, not {model.name}; use the same --model")
    text = proposal.original_text() if text is None else text
    target = hole_target(proposal, text)
    options = settings.decode_options(seed=settings.seed + proposal.passes,
                                      min_tokens=min(MIN_FILL_TOKENS, settings.max_tokens))
    prefix, chat_instruction = instructed(target, proposal.prefix(text), proposal.instruction, model)
    stream = generator(model).refine_stream(
        prefix, proposal.suffix(text), proposal.completion(), remask=remask, lines=lines,
        path=proposal.rel_path, context=proposal.context, options=options, instruction=chat_instruction,
    )
    for item in stream:
        if isinstance(item, HoleState):
            yield item
            continue
        item, note, updated_problem = fit_to_scope(target, at_marker_indent(target, item, model.tokenizer),
                                                   model.tokenizer)
        updated = finish(proposal, item)
        updated.problem = updated_problem  # judged again on the refined text
        told = server_notes(item) + ([note] if note else [])
        if isinstance(item, RemoteCompletion) and item.regenerated is not None:
            first = proposal.file_lines(text)[0]
            told.append(regenerated_note(first + item.regenerated[0] - 1, first + item.regenerated[1] - 1))
        updated.notes = [n for n in updated.notes if n not in told] + told
        verify(updated, target)
        yield updated
