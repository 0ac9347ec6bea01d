"""An open document as dcode sees it: the editor's text (unsaved edits included, never the file on
disk), its path (for the language and the repository context), LSP positions as character
offsets, and the holes and definitions in it, found as `dcode fill` and `dcode write` find them."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument, Workspace

from dcode.context.languages import detect_language
from dcode.context.syntax import FUNCTION_LIKE
from dcode.edit.document import Document
from dcode.edit.targets import MAX_FILE_BYTES, Target, find_holes, symbol_in_text
from dcode.errors import InputError

# What an editor filters completion items by: the identifier the cursor is in.
WORD_BEFORE = re.compile(r"[A-Za-z0-9_]*\Z")


@dataclass
class Buffer:
    """One open document at one version."""

    uri: str
    path: Path | None  # None for a document that is not a file (an unsaved, untitled buffer)
    text: str
    version: int | None
    document: TextDocument

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else self.uri

    def file(self) -> Path:
        """The document's path, for what needs one (the language, the repository context)."""
        if self.path is None:
            raise InputError(f"{self.uri}: save the document first (dcode needs its file name for the language "
                             "and the repository context)")
        return self.path

    # -- positions -----------------------------------------------------------------------------
    def offset(self, position: types.Position) -> int:
        return min(self.document.offset_at_position(position), len(self.text))

    def position(self, offset: int) -> types.Position:
        if not self.text:
            return types.Position(line=0, character=0)
        return self.document.client_position_at_offset(offset)

    def range(self, start: int, end: int) -> types.Range:
        return types.Range(start=self.position(start), end=self.position(end))

    def word_before(self, offset: int) -> str:
        """The identifier characters just before `offset` on its line."""
        line_start = self.text.rfind("\n", 0, offset) + 1
        match = WORD_BEFORE.search(self.text, line_start, offset)
        return match.group() if match else ""

    # -- what dcode can fill ---------------------------------------------------------------------
    def holes(self) -> list[Target]:
        """Markers, stub bodies and syntax-error regions, as `dcode fill PATH` finds them."""
        path = self.file()
        return [dataclasses.replace(t, path=path) for t in find_holes(self.text, detect_language(path, self.text))]

    def hole_at(self, start: int, end: int) -> Target | None:
        """The first hole that touches characters [start, end]."""
        return next((t for t in self.holes() if t.start <= end and start <= t.end), None)

    def function_at(self, offset: int) -> Target | None:
        """The body of the innermost function or method around `offset` (its header included), as
        `dcode write PATH::NAME` would write it."""
        path = self.file()
        doc = Document(path, self.text, detect_language(path, self.text))
        byte = doc.offsets.to_byte(offset)
        around = [d for d in doc.definitions
                  if d.kind in FUNCTION_LIKE and d.body is not None and d.start_byte <= byte <= d.end_byte]
        if not around:
            return None
        innermost = max(around, key=lambda d: d.start_byte)
        return symbol_in_text(path, self.text, innermost.qualname or innermost.name)

    def range_target(self, start: int, end: int) -> Target:
        """Characters [start, end) as a hole to regenerate."""
        path = self.file()
        doc = Document(path, self.text, detect_language(path, self.text))
        return doc.make(start, end, "range", scopes=doc.scopes_at(start, end))

    # -- edits -----------------------------------------------------------------------------------
    def text_edit(self, new_text: str) -> types.TextEdit:
        """The one edit that turns this text into `new_text`: the span between what they share at
        the start and at the end."""
        old = self.text
        start = 0
        limit = min(len(old), len(new_text))
        while start < limit and old[start] == new_text[start]:
            start += 1
        tail = 0
        while tail < limit - start and old[-1 - tail] == new_text[-1 - tail]:
            tail += 1
        return types.TextEdit(range=self.range(start, len(old) - tail), new_text=new_text[start : len(new_text) - tail])

    def workspace_edit(self, new_text: str, versioned: bool) -> types.WorkspaceEdit:
        """`new_text` as a WorkspaceEdit; `versioned` ties it to this version of the document, so
        that an editor whose buffer changed meanwhile refuses it rather than garbling it."""
        edit = self.text_edit(new_text)
        if not versioned:
            return types.WorkspaceEdit(changes={self.uri: [edit]})
        document = types.OptionalVersionedTextDocumentIdentifier(uri=self.uri, version=self.version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=document, edits=[edit])])


def open_buffer(workspace: Workspace, uri: str) -> Buffer:
    """The open document `uri` as it is now in the editor; refused like a file `dcode fill`
    would refuse (binary, or larger than it edits)."""
    if uri not in workspace.text_documents:
        raise InputError(f"{uri} is not open in the editor (send textDocument/didOpen first)")
    document = workspace.get_text_document(uri)
    path = to_fs_path(uri) if uri.startswith("file:") else None
    buffer = Buffer(uri, Path(path) if path else None, document.source, document.version, document)
    size = len(buffer.text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise InputError(f"{buffer.name} is {size / 2**20:.1f} MiB: larger than dcode's limit of "
                         f"{MAX_FILE_BYTES // 2**20} MiB for a file it edits")
    if "\0" in buffer.text:
        raise InputError(f"{buffer.name} is a binary file")
    return buffer
