"""Turn what the user points at into a hole: the character range to regenerate, plus its scopes.

Target forms (see `resolve_target`):

* `path:LINE`          the whole line (with its line break)
* `path:START-END`     whole lines START..END, inclusive
* `path:LINE:COL`      an empty insertion point before column COL (1-based, in characters)
* `path::Class.method` the body of a definition after its docstring (`::` also separates C++/Rust
                       scopes: `path::ns::Class::method`); its first hole marker when it has one
* `path`               the first hole marker, else the first stub body, else the first syntax error

Hole markers, stubs and syntax errors are found by `dcode.edit.holes`; the file's parse is
`dcode.context.parsed.ParsedFile`, and `Target` itself lives in `dcode.context.target`.

Holes made of whole lines include their final line break, so `text[:start] + new + text[end:]`
with `new` ending in a newline is the edit. Holes are never silently widened past what the user
chose: lines are only completed when the hole's statements sit alone on their lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dcode.context.languages import Language, PLAIN_TEXT, detect_language, get_language
# Front ends import Target from here, next to resolve_target which makes one.
from dcode.context.target import Target
from dcode.edit.document import Document
from dcode.edit.files import decode_source
from dcode.edit.holes import all_holes, body_hole, marker_target
from dcode.errors import InputError

# Larger files are refused before they are read: parsing, context, verification and the diff
# each go over the whole file, so a 50 MB file took minutes and gigabytes before any proposal.
MAX_FILE_BYTES = 2 * 2**20
SPEC_HELP = "expected PATH, PATH:LINE, PATH:LINE:COL, PATH:START-END or PATH::SYMBOL"


def read_source(path: Path | str) -> str:
    """A file's text, decoded as UTF-8 (a Python file: as its coding line declares) with line
    endings untouched."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{path} is {size / 2**20:.1f} MiB: larger than dcode's limit of "
                             f"{MAX_FILE_BYTES // 2**20} MiB for a file it edits")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise InputError(f"{path} is a binary file")
    return decode_source(path, data)


def find_holes(path_or_text: Path | str, language: Language | None = None) -> list[Target]:
    """Every marker, stub body and syntax-error region, in file order.

    A `Path` is read from disk (language detected unless given); a `str` is the source text itself
    (plain text unless `language` is given).
    """
    if isinstance(path_or_text, Path):
        text = read_source(path_or_text)
        doc = Document(path_or_text, text, language or detect_language(path_or_text, text))
    else:
        doc = Document(Path("<text>"), path_or_text, language or get_language(PLAIN_TEXT))
    markers, stubs, errors = all_holes(doc)
    return sorted(markers + stubs + errors, key=lambda t: (t.start, t.end))


# --------------------------------------------------------------------------------------------
# Target specs
# --------------------------------------------------------------------------------------------

_RANGE = re.compile(r"(?P<path>.+):(?P<first>\d+)-(?P<last>\d+)")
_POSITION = re.compile(r"(?P<path>.+):(?P<line>\d+):(?P<col>\d+)")
_LINE = re.compile(r"(?P<path>.+):(?P<line>\d+)")


def resolve_target(spec: str, root: Path | None = None) -> Target:
    """Resolve a target spec; relative paths are taken from `root` (default: the working directory)."""
    spec = spec.strip()
    if not spec:
        raise InputError(f"empty target: {SPEC_HELP}")
    base = Path(root) if root is not None else None
    if _exists(base, spec):
        return _bare_path(_document(base, spec))
    if "::" in spec:
        path_part, symbol = spec.split("::", 1)
        if not path_part or not symbol.strip(":. "):
            raise InputError(f"malformed target '{spec}': {SPEC_HELP}")
        return _symbol_target(_document(base, path_part), symbol)
    if match := _RANGE.fullmatch(spec):
        return _range_target(_document(base, match["path"]), int(match["first"]), int(match["last"]), spec)
    if match := _POSITION.fullmatch(spec):
        return _position_target(_document(base, match["path"]), int(match["line"]), int(match["col"]), spec)
    if match := _LINE.fullmatch(spec):
        return _range_target(_document(base, match["path"]), int(match["line"]), int(match["line"]), spec)
    head = spec.rsplit(":", 1)[0]
    if ":" in spec and _exists(base, head):
        raise InputError(f"malformed target '{spec}': {SPEC_HELP}")
    return _bare_path(_document(base, spec))  # reports the missing file


def _exists(base: Path | None, path: str) -> bool:
    candidate = Path(path) if base is None or Path(path).is_absolute() else base / path
    try:
        return candidate.is_file()
    except OSError:
        return False


def _document(base: Path | None, path_str: str) -> Document:
    # Keep the path as typed when it is relative to the working directory: messages echo it.
    path = Path(path_str) if base is None or Path(path_str).is_absolute() else base / path_str
    text = read_source(path)
    return Document(path, text, detect_language(path, text))


def _bare_path(doc: Document) -> Target:
    markers, stubs, errors = all_holes(doc)
    for group in (markers, stubs, errors):
        if group:
            return group[0]
    raise InputError(
        f"nothing to fill in {doc.path}: no dcode: fill marker, stub body or syntax error; point at a line or symbol"
    )


def _check_line(doc: Document, line: int, spec: str) -> None:
    count = doc.offsets.line_count
    if line < 1:
        raise InputError(f"bad target '{spec}': line numbers start at 1")
    if line > max(count, 1):
        raise InputError(f"bad target '{spec}': {doc.path} has only {count} lines")


def _range_target(doc: Document, first: int, last: int, spec: str) -> Target:
    if last < first:
        raise InputError(f"bad target '{spec}': the range ends before it starts")
    _check_line(doc, first, spec)
    _check_line(doc, last, spec)
    start = doc.offsets.line_span(first)[0]
    end = doc.offsets.line_span(last)[1]
    return doc.make(start, end, "line" if first == last else "range", scopes=doc.scopes_at(start, end))


def _position_target(doc: Document, line: int, col: int, spec: str) -> Target:
    _check_line(doc, line, spec)
    line_start, line_end = doc.offsets.line_span(line)
    length = len(doc.text[line_start:line_end].rstrip("\r\n"))
    if col < 1 or col > length + 1:
        raise InputError(f"bad target '{spec}': line {line} of {doc.path} has {length} characters")
    position = line_start + col - 1
    target = doc.make(position, position, "position", scopes=doc.scopes_at(position, position))
    return target


def _symbol_target(doc: Document, symbol: str) -> Target:
    if doc.syntax is None:
        raise InputError(f"cannot find symbol '{symbol}' in {doc.path}: no grammar for {doc.lang.name} files")
    wanted = ".".join(p for p in re.split(r"::|\.", symbol.strip()) if p)
    matches = [d for d in doc.definitions if d.qualname == wanted or d.qualname.endswith("." + wanted)]
    exact = [d for d in matches if d.qualname == wanted]
    matches = exact or matches
    with_body = [d for d in matches if d.body is not None]
    if not matches:
        known = ", ".join(d.qualname for d in doc.definitions[:8]) or "none"
        raise InputError(f"unknown symbol '{symbol}' in {doc.path} (definitions there: {known})")
    if not with_body:
        raise InputError(f"'{symbol}' in {doc.path} is a declaration without a body; point at a line instead")
    if len(with_body) > 1:
        # Rust: `S` names both `struct S` and `impl S`; the type is what the user means.
        not_impl = [d for d in with_body if d.kind != "impl"]
        with_body = not_impl if len(not_impl) == 1 else with_body
    if len(with_body) > 1:
        lines = ", ".join(str(d.node.start_point[0] + 1) for d in with_body)
        raise InputError(f"symbol '{symbol}' is ambiguous in {doc.path} (lines {lines}); point at a line instead")
    defn = with_body[0]
    assert defn.body is not None
    # A marker in the body says where the code goes, as for `fill PATH`. (Python's parse sees it
    # as `pass`, so the body's statements would otherwise end inside the comment.)
    body_start, body_end = doc.char(defn.body.start_byte), doc.char(defn.body.end_byte)
    marker = next((m for m in doc.markers if body_start <= m.content_start < body_end), None)
    if marker is not None:
        return marker_target(doc, marker, symbol=defn.qualname)
    start, end, indent = body_hole(doc, defn)
    extra: dict[str, Any] = {"scopes": doc.chain_of(defn), "symbol": defn.qualname}
    if indent is not None:
        extra["indent"] = indent
    return doc.make(start, end, "symbol", **extra)


def target_in_text(path: Path, text: str, offset: int) -> Target:
    """An empty insertion point at character `offset` of an editor buffer (`text` need not match
    the file on disk): what `dcode complete` gathers repository context for."""
    doc = Document(path, text, detect_language(path, text))
    offset = max(0, min(offset, len(text)))
    return doc.make(offset, offset, "position", scopes=doc.scopes_at(offset, offset))


def symbol_in_text(path: Path, text: str, symbol: str) -> Target:
    """`path::symbol` in an editor buffer's `text` (which need not match the file on disk)."""
    return _symbol_target(Document(path, text, detect_language(path, text)), symbol)


def scope_exit(target: Target, fill: str) -> int | None:
    """Where code put into the hole leaves the definition the hole is in, as an offset into
    `fill`; None when it stays inside (or the hole is in no definition). Models often finish a
    body and go on to write the next function, or close the body's brace themselves although
    the file already does; that part is not what was asked for.

    The cut is after the last line still inside the definition; a closing brace the fill put on
    a line of its own goes too, since the text after the hole holds the real one."""
    if not target.scopes or target.kind == "syntax_error" or not fill.strip():
        return None
    owner = target.scopes[-1]
    text = target.text[: target.start] + fill + target.text[target.end :]
    fill_end = target.start + len(fill)
    doc = Document(target.path, text, target.language)
    if doc.tree is None:
        return None
    here = [s for s in doc.scopes_at(target.start, target.start) if (s.qualname, s.name) == (owner.qualname, owner.name)]
    if not here:
        cut = target.start  # the fill's first code is already outside (it dedented at once)
    elif here[-1].end >= fill_end:
        return None
    else:
        cut = max(_scope_cut(text, here[-1].end), target.start)
    if not text[cut:fill_end].strip():
        return None  # only blank lines after the definition: nothing escapes
    return cut - target.start


def _scope_cut(text: str, end: int) -> int:
    """Where to cut text that goes on past a definition ending at `end`: after the definition's
    last line, or before its closing brace (on its own line: the whole line)."""
    line_start = text.rfind("\n", 0, end) + 1
    brace = text.rfind("}", line_start, end)
    if brace >= 0 and text[brace + 1 : end].strip() in ("", ";"):
        return line_start if not text[line_start:brace].strip() else brace
    newline = text.find("\n", end)
    return len(text) if newline < 0 else newline + 1
