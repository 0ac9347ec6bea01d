"""Completion at the cursor: the `dcode complete` request made from the editor's buffer, answered
by the warm model, for `textDocument/inlineCompletion` (ghost text) and `textDocument/completion`.

A newer request stops the one still running: its answer would be for text the user has already
changed. A suggestion the user goes on typing is answered without the model: what is left of it,
as long as what they typed is how it starts and nothing after the cursor changed. (The model's
own prompt cache then covers the next request that does reach it: with a causal-context model
the keys and values of the shared prefix are reused.)"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types

from dcode.lsp.buffers import Buffer
from dcode.lsp.worker import Job, ModelWorker, checked


@dataclass(frozen=True)
class Suggestion:
    """A completion the editor was given, and the buffer around the cursor it was made for."""

    uri: str
    prefix: str
    suffix: str
    text: str

    def rest(self, uri: str, prefix: str, suffix: str) -> str | None:
        """What is left to suggest once the user typed `prefix[len(self.prefix):]`; None when that is
        not how this suggestion starts (or it was all typed), so the model must answer afresh."""
        if uri != self.uri or suffix != self.suffix or not prefix.startswith(self.prefix):
            return None
        typed = prefix[len(self.prefix) :]
        if not self.text.startswith(typed) or (typed and typed == self.text):
            return None
        return self.text[len(typed) :]


@dataclass
class Answer:
    """The text to insert at the cursor ("" when the model had nothing), or None when the request
    was stopped; `reused` when it came from the last suggestion rather than the model."""

    text: str | None
    reused: bool = False


class Suggester:
    """Completion at the cursor, through the model worker."""

    def __init__(self, worker: ModelWorker) -> None:
        self.worker = worker
        self.last: Suggestion | None = None
        self.running: Job | None = None

    def forget(self, uri: str) -> None:
        if self.last is not None and self.last.uri == uri:
            self.last = None

    async def suggest(self, buffer: Buffer, offset: int, job: Job) -> Answer:
        prefix, suffix = buffer.text[:offset], buffer.text[offset:]
        if self.last is not None and (rest := self.last.rest(buffer.uri, prefix, suffix)) is not None:
            return Answer(rest, reused=True)
        if self.running is not None:
            self.running.cancel("a newer request")
        self.running = job
        request = {"input_prefix": prefix, "input_suffix": suffix,
                   "filename": str(buffer.path) if buffer.path is not None else None}
        try:
            answer = await self.worker.run(
                lambda completer, job: completer.answer(request, on_text=lambda text: job.tick(f"{len(text)} characters settled")),
                job,
            )
        finally:
            if self.running is job:
                self.running = None
        if answer is None:
            return Answer(None)
        text = checked(answer)["content"]
        self.last = Suggestion(buffer.uri, prefix, suffix, text)
        return Answer(text)


def inline_items(buffer: Buffer, offset: int, text: str) -> types.InlineCompletionList:
    """The suggestion as ghost text at the cursor."""
    if not text:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(insert_text=text, range=buffer.range(offset, offset))
    return types.InlineCompletionList(items=[item])


def completion_items(buffer: Buffer, offset: int, text: str) -> types.CompletionList:
    """The suggestion as one completion item. Editors filter items by the word at the cursor, so the
    item covers that word too (it starts with what was typed); the list is incomplete, so that the
    next keystroke asks again."""
    if not text.strip():
        return types.CompletionList(is_incomplete=True, items=[])
    word = buffer.word_before(offset)
    whole = word + text
    label = next(line for line in whole.splitlines() if line.strip()).strip()
    item = types.CompletionItem(
        label=label, kind=types.CompletionItemKind.Text, detail="dcode", filter_text=whole,
        text_edit=types.TextEdit(range=buffer.range(offset - len(word), offset), new_text=whole),
        insert_text_format=types.InsertTextFormat.PlainText,
    )
    return types.CompletionList(is_incomplete=True, items=[item])
