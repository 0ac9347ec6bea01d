"""What a parse says about a whole file: tree-sitter's syntax-error regions and hole markers, and
for Python also `compile()`'s verdict (tree-sitter's grammar lags the language, and it accepts some
code Python rejects); and what a fill put into its hole, beyond parsing. The workflow judges every
proposal by them, the hook every candidate fix."""

from __future__ import annotations

import re
import textwrap
import warnings
from dataclasses import dataclass
from difflib import SequenceMatcher

import tree_sitter

from dcode.context.definitions import docstring_node
from dcode.context.languages import Language, parse
from dcode.context.syntax import FUNCTION_LIKE, node_text
from dcode.context.target import Target
from dcode.edit.document import Document
from dcode.edit.files import encode_source
from dcode.edit.targets import find_holes
from dcode.errors import InputError


@dataclass
class SyntaxCheck:
    """One parse of a whole file."""

    holes: list[Target]  # find_holes' view: markers, stubs, syntax-error regions
    errors: int  # tree-sitter syntax-error regions (a marker counts as a statement)
    markers: int
    compile_error: str | None  # Python's verdict; None when it compiles or is not Python
    compile_line: int | None = None  # the line (1-based) that verdict points at

    @property
    def first_error(self) -> str:
        return next((h.detail or "syntax error" for h in self.holes if h.kind == "syntax_error"), "syntax error")


def check_syntax(text: str, lang: Language) -> SyntaxCheck:
    holes = find_holes(text, lang)
    markers = [h for h in holes if h.kind == "marker"]
    errors = sum(h.kind == "syntax_error" for h in holes)
    compile_error, compile_line = _python_compile_error(text, markers) if lang.name == "python" else (None, None)
    return SyntaxCheck(holes, errors, len(markers), compile_error, compile_line)


def _python_compile_error(text: str, markers: list[Target]) -> tuple[str | None, int | None]:
    """`compile()`'s complaint and its line, with unfilled markers standing in as `pass` (a marker
    alone in a block is a hole, not an empty block)."""
    source = text
    for marker in reversed(markers):
        ending = "\r\n" if marker.hole.endswith("\r\n") else "\n" if marker.hole.endswith("\n") else ""
        source = source[: marker.start] + marker.indent + "pass" + ending + source[marker.end :]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like are not ours to report
            compile(source.removeprefix("\ufeff"), "<dcode hook>", "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError included
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})", exc.lineno
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: {exc}", None
    return None, None


# --------------------------------------------------------------------------------------------
# What a fill put in its hole, judged beyond "the file parses"
# --------------------------------------------------------------------------------------------

MIN_KEPT_FRACTION = 0.5  # a repair must keep at least this share of the region's code characters, in order
_MARKER_WORDS = "dcode: fill"
# Python's way of saying a function gives nothing back; anything else after `->` is a result.
_NO_RESULT_ANNOTATIONS = frozenset({"None", "NoReturn", "Never", "typing.NoReturn", "typing.Never"})
# A docstring that opens with what the function gives back ("Return the mean"), or has a section
# saying so (Google's `Returns:`, numpy's `Returns` underlined, Sphinx's `:returns:`).
_DESCRIBES_RESULT = re.compile(r"\A[rRuU]?(?:\"\"\"|'''|\"|')\s*(?:Returns?|Yields?)\b(?!\s+(?:None|nothing)\b)"
                               r"|^\s*(?:Returns?|Yields?)(?::|\s*\n\s*-{3,})|:returns?:|:rtype:", re.M)
_RESULT_STATEMENT = re.compile(r"\breturn\b[ \t]*[^\s;#]|\byield\b")
_NESTED_SCOPES = frozenset({"function_definition", "class_definition", "lambda"})


def filled_span(target: Target, new_text: str) -> tuple[int, int]:
    """Where the fill lies in `new_text` (character offsets): the hole's start to where the text
    after the hole begins."""
    return target.start, len(new_text) - (len(target.text) - target.end)


def region_error(after: SyntaxCheck, new_text: str, start: int, stop: int, lang: Language) -> str | None:
    """Why the filled lines themselves do not parse, or None. A fill is judged where it is, not
    only by the whole file's error count (a file broken before can stay as broken with a new
    error in the fill). An error region of the file that overlaps the fill counts when the fill's
    lines do not parse on their own either: a region left by an error elsewhere (an unclosed
    bracket above) that only spans the fill is not the fill's."""
    if not new_text[start:stop].strip():
        return None
    regions = [h for h in after.holes if h.kind == "syntax_error" and h.start < stop and h.end > start]
    if not regions:
        return None
    lines = new_text[new_text.rfind("\n", 0, start) + 1 : stop]
    alone = parse(textwrap.dedent(lines), lang)
    if alone is None or not alone.root_node.has_error:
        return None
    return regions[0].detail or "syntax error"


def fill_problem(target: Target, new_text: str) -> str | None:
    """Why a fill that parses is still not what was asked for, or None: it leaves a piece of the
    `dcode: fill` marker, is only a comment where code was asked for, deletes most of the code it
    was to repair, leaves a function that describes a result returning nothing, or holds text the
    file's declared encoding cannot.
    The same checks judge `fill`, `write`, `refine`, an edited proposal and the hook's fixes."""
    start, stop = filled_span(target, new_text)
    fill = new_text[start:stop]
    lang = target.language
    if fragment := _marker_fragment(fill, lang):
        return f"leaves a piece of the `dcode: fill` marker ({fragment.strip()!r})"
    asked_for_code = target.kind not in ("line", "range") or _code_of(target.hole, lang).strip()
    if asked_for_code and not _code_of(fill, lang).strip():
        return "is only a comment" if fill.strip() else "is empty"
    if target.kind == "syntax_error":
        kept, total = _kept_code(target.hole, fill), _code_chars(target.hole)
        if kept < MIN_KEPT_FRACTION * total:
            return f"deletes the code it was to repair (keeps {kept} of its {total} characters)"
    # A rewrite of lines that gave no result is not asked for one; a body, or lines that did, are.
    gave_result = target.kind not in ("line", "range", "syntax_error") or _RESULT_STATEMENT.search(target.hole)
    if lang.name == "python" and gave_result and (missing := _missing_result(target, new_text, start, stop)):
        return missing
    try:
        encode_source(target.path, new_text)
    except InputError as err:
        return f"cannot be saved ({err})"
    return None


def _kept_code(hole: str, fill: str) -> int:
    """How many of `hole`'s code characters the fill kept, in order: re-masking may mend a broken
    region, not replace the user's code (`return a +` -> `pass`) or delete it until what is left
    parses."""
    old, new = ("".join(text.split()) for text in (hole, fill))
    return sum(block.size for block in SequenceMatcher(None, old, new, autojunk=False).get_matching_blocks())


def _code_chars(text: str) -> int:
    return sum(not c.isspace() for c in text)


def _code_of(text: str, lang: Language) -> str:
    """`text` without its comments (whole-line comments and block comments; a comment opener
    inside a string is rare enough in a fill to be read as code)."""
    for opener, closer in lang.block_comments:
        text = re.sub(re.escape(opener) + ".*?" + re.escape(closer), "", text, flags=re.S)
    return "".join(line for line in text.splitlines(keepends=True) if not line.strip().startswith(lang.line_comments))


def _marker_fragment(fill: str, lang: Language) -> str | None:
    """A comment line of the fill that is what is left of a `dcode: fill` marker (`# dcode:`,
    `// dcode`), or the whole marker again."""
    for line in fill.splitlines():
        words = line.strip()
        for opener in lang.comment_prefixes:
            if words.startswith(opener):
                words = words[len(opener):]
                break
        else:
            continue
        words = " ".join(words.strip(" \t/*-!#").split()).lower()
        if words and (_MARKER_WORDS.startswith(words) or "dcode:" in words):
            return line
    return None


def _missing_result(target: Target, new_text: str, start: int, stop: int) -> str | None:
    """For a fill in a Python function whose signature or docstring says it gives a result: the
    problem when the function, filled, has no `return VALUE` or `yield` at all (a bare `return`,
    `pass` or a comment for a body)."""
    doc = Document(target.path, new_text, target.language)
    if doc.tree is None or doc.syntax is None:
        return None
    fill = new_text[start:stop]  # its code, without the blank space around it, lies in the body
    b0 = doc.offsets.to_byte(start + len(fill) - len(fill.lstrip()))
    b1 = doc.offsets.to_byte(stop - (len(fill) - len(fill.rstrip())))
    functions = [d for d in doc.definitions if d.kind in FUNCTION_LIKE and d.body is not None
                 and d.body.start_byte <= b0 and b1 <= d.body.end_byte]
    if not functions:
        return None
    function = max(functions, key=lambda d: d.body.start_byte)  # the innermost
    returns = function.node.child_by_field_name("return_type")
    annotation = node_text(returns).strip() if returns is not None else ""
    if annotation and annotation not in _NO_RESULT_ANNOTATIONS:
        why = f"{function.name} is declared to return {annotation}"
    elif (docstring := docstring_node(function, doc.syntax)) and _DESCRIBES_RESULT.search(node_text(docstring)):
        why = f"the docstring of {function.name} describes a result"
    else:
        return None
    return None if _gives_result(function.body) else f"returns nothing, but {why}"


def _gives_result(body: tree_sitter.Node) -> bool:
    """Whether a function body has a `return VALUE` or a `yield` of its own (not of a function,
    class or lambda inside it)."""
    stack = list(body.named_children)
    while stack:
        node = stack.pop()
        if node.type == "yield" or (node.type == "return_statement" and node.named_child_count):
            return True
        if node.type not in _NESTED_SCOPES:
            stack.extend(node.named_children)
    return False
