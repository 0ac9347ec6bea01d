"""Code actions and the `workspace/executeCommand` commands they run, on the editor's buffer:

* "dcode: fill hole": the marker, stub body or syntax error at the cursor, as `dcode fill PATH`
  finds them;
* "dcode: write function": the body of the function or method around the cursor, as
  `dcode write PATH::NAME` writes it;
* "dcode: refine selection": in a fill dcode made (and the editor applied), re-mask the selected
  tokens, or with nothing selected the least confident ones, and denoise again, as `dcode refine`
  does; elsewhere, the selected text is masked whole and generated again.

Each runs the workflow (verified proposals, the same context and decoding as the CLI) and
answers with a WorkspaceEdit, which the editor applies as one step of its own undo."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from lsprotocol.converters import get_converter

from dcode.complete.completer import Completer
from dcode.complete.request import mark_positions
from dcode.errors import InputError
from dcode.lsp.buffers import Buffer
from dcode.lsp.worker import Job, drive

if TYPE_CHECKING:
    from dcode.edit.proposal import Proposal

FILL_HOLE = "dcode.fillHole"
WRITE_FUNCTION = "dcode.writeFunction"
REFINE_SELECTION = "dcode.refineSelection"
TITLES = {FILL_HOLE: "dcode: fill hole", WRITE_FUNCTION: "dcode: write function",
          REFINE_SELECTION: "dcode: refine selection"}
KINDS = {FILL_HOLE: types.CodeActionKind.QuickFix, WRITE_FUNCTION: types.CodeActionKind.RefactorRewrite,
         REFINE_SELECTION: types.CodeActionKind.RefactorRewrite}
CONVERTER = get_converter()


@dataclass
class Fill:
    """A proposal the editor applied: what "refine selection" revises in place. `before` is the
    text it was made for (its hole still there), `inserted` what took the hole's place."""

    proposal: Proposal
    before: str
    inserted: str

    @classmethod
    def applied(cls, proposal: Proposal, before: str) -> Fill:
        after = proposal.new_text(before)
        return cls(proposal, before, after[proposal.start : len(after) - (len(before) - proposal.end)])

    def locate(self, text: str) -> tuple[Proposal, str] | None:
        """The proposal and the text it was made for, as they stand in the buffer `text` now (the
        user may have edited around the fill); None when the fill is not there as dcode wrote it."""
        start = self.proposal.start
        if text[start : start + len(self.inserted)] != self.inserted:
            if text.count(self.inserted) != 1:
                return None
            start = text.index(self.inserted)
        hole = self.before[self.proposal.start : self.proposal.end]
        before = text[:start] + hole + text[start + len(self.inserted) :]
        return dataclasses.replace(self.proposal, start=start, end=start + len(hole)), before

    def span(self, text: str) -> tuple[int, int] | None:
        """Where the fill is in `text`, when it is still there."""
        located = self.locate(text)
        return None if located is None else (located[0].start, located[0].start + len(self.inserted))


@dataclass
class Plan:
    """A command's work on the model's thread, and the text its proposal is made for."""

    work: Callable[[Completer, Job], Proposal | None]
    before: str


def code_actions(buffer: Buffer, start: int, end: int, fill: Fill | None,
                 selection: types.Range) -> list[types.CodeAction]:
    """The dcode actions that apply at [start, end] (the cursor or the selection)."""
    try:
        offered = [FILL_HOLE] if buffer.hole_at(start, end) is not None else []
        offered += [WRITE_FUNCTION] if buffer.function_at(start) is not None else []
    except InputError:  # not a file: nothing to fill or write
        return []
    span = fill.span(buffer.text) if fill is not None else None
    if end > start or (span is not None and span[0] <= start <= span[1]):
        offered.append(REFINE_SELECTION)
    arguments = [{"uri": buffer.uri, "range": CONVERTER.unstructure(selection)}]
    return [types.CodeAction(title=TITLES[c], kind=KINDS[c], command=types.Command(title=TITLES[c], command=c, arguments=arguments))
            for c in offered]


def command_target(arguments: list[Any] | None) -> tuple[str, types.Range]:
    """(uri, range) from a command's arguments: `[{"uri": ..., "range": {...}}]`, as the code
    actions send them."""
    if not arguments or not isinstance(arguments[0], dict) or not isinstance(arguments[0].get("uri"), str):
        raise InputError('dcode commands take one argument: {"uri": DOCUMENT, "range": RANGE}')
    try:
        selection = CONVERTER.structure(arguments[0].get("range"), types.Range)
    except Exception:  # cattrs reports a malformed range in many ways
        raise InputError('the argument\'s "range" must be an LSP range {"start": POSITION, "end": POSITION}') from None
    return arguments[0]["uri"], selection


def plan(command: str, buffer: Buffer, start: int, end: int, fill: Fill | None) -> Plan:
    """What `command` runs for [start, end] of the buffer; InputError when it does not apply there."""
    from dcode.workflow import propose_verified

    def proposing(target, mode: str) -> Plan:
        return Plan(lambda completer, job: drive(
            propose_verified(target, mode, completer.ensure_model(), completer.settings), job), buffer.text)

    line = buffer.text.count("\n", 0, start) + 1
    if command == FILL_HOLE:
        if (hole := buffer.hole_at(start, end)) is None:
            raise InputError(f"{buffer.name}:{line}: no dcode: fill marker, stub body or syntax error here")
        return proposing(hole, "fill")
    if command == WRITE_FUNCTION:
        if (function := buffer.function_at(start)) is None:
            raise InputError(f"{buffer.name}:{line}: not inside a function or method")
        return proposing(function, "write")
    if command != REFINE_SELECTION:
        raise InputError(f"unknown command {command!r} (dcode has {', '.join(TITLES)})")
    located = fill.locate(buffer.text) if fill is not None else None
    if located is not None:
        proposal, before = located
        first, last = proposal.start, proposal.start + len(fill.inserted)
        if first <= start and end <= last:
            return Plan(refining(proposal, before, (start - first, end - first) if end > start else None), before)
    if end > start:
        return proposing(buffer.range_target(start, end), "fill")
    raise InputError(f"{buffer.name}:{line}: select the code to refine, or put the cursor in a fill dcode made")


def refining(proposal: Proposal, before: str, selected: tuple[int, int] | None
             ) -> Callable[[Completer, Job], Proposal | None]:
    """Refine `proposal` (made for `before`): re-mask its tokens that overlap `selected` (character
    offsets into the fill), or its least confident ones when nothing is selected."""
    from dcode.workflow import refine

    def work(completer: Completer, job: Job) -> Proposal | None:
        model = completer.ensure_model()
        draft, remask = proposal, None
        if selected is not None:
            spans = model.tokenizer.char_spans(proposal.token_ids)
            positions = [i for i, (a, b) in enumerate(spans) if a < selected[1] and b > selected[0]]
            if positions:  # the marked tokens are the least confident of all: exactly they are re-masked
                draft = dataclasses.replace(proposal, confidences=mark_positions(proposal.confidences, positions))
                remask = len(positions)
        return drive(refine(draft, model, completer.settings, remask=remask, text=before), job)

    return work
