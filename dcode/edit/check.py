"""What a parse says about a whole file: tree-sitter's syntax-error regions and hole markers, and
for Python also `compile()`'s verdict (tree-sitter's grammar lags the language, and it accepts some
code Python rejects). The workflow judges a proposal by it, the hook every candidate fix."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from dcode.context.languages import Language
from dcode.context.target import Target
from dcode.edit.targets import find_holes


@dataclass
class SyntaxCheck:
    """One parse of a whole file."""

    holes: list[Target]  # find_holes' view: markers, stubs, syntax-error regions
    errors: int  # tree-sitter syntax-error regions (a marker counts as a statement)
    markers: int
    compile_error: str | None  # Python's verdict; None when it compiles or is not Python

    @property
    def first_error(self) -> str:
        return next((h.detail or "syntax error" for h in self.holes if h.kind == "syntax_error"), "syntax error")


def check_syntax(text: str, lang: Language) -> SyntaxCheck:
    holes = find_holes(text, lang)
    markers = [h for h in holes if h.kind == "marker"]
    errors = sum(h.kind == "syntax_error" for h in holes)
    compile_error = _python_compile_error(text, markers) if lang.name == "python" else None
    return SyntaxCheck(holes, errors, len(markers), compile_error)


def _python_compile_error(text: str, markers: list[Target]) -> str | None:
    """`compile()`'s complaint, with unfilled markers standing in as `pass` (a marker alone in a
    block is a hole, not an empty block)."""
    source = text
    for marker in reversed(markers):
        ending = "\r\n" if marker.hole.endswith("\r\n") else "\n" if marker.hole.endswith("\n") else ""
        source = source[: marker.start] + marker.indent + "pass" + ending + source[marker.end :]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like are not ours to report
            compile(source.removeprefix("\ufeff"), "<dcode hook>", "exec", dont_inherit=True)
    except SyntaxError as exc:  # IndentationError and TabError included
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
