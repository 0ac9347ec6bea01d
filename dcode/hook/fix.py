"""One file's holes filled and repaired in memory: markers, stubs around them, syntax errors;
every candidate judged by re-parsing the whole file (`dcode.edit.check`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from dcode.context import languages as L
from dcode.context.languages import Language
from dcode.edit.check import SyntaxCheck, check_syntax, fill_problem
from dcode.edit.holes import repair_windows
from dcode.edit.targets import Target, find_holes
from dcode.errors import InputError
from dcode.hook.filler import HoleFiller

DEFAULT_ATTEMPTS = 4
MAX_HOLES_PER_FILE = 32  # a bound on the fix loop, in case fills keep producing new holes
REGION_SLACK_TOKENS = 8  # room a repair gets beyond the broken region's own length


@dataclass
class FileFix:
    """What the hook did to one file. `new_text` is None when nothing verified is to be written."""

    path: Path
    original: str
    new_text: str | None = None
    fixed: list[str] = field(default_factory=list)  # what new_text fixes
    unverified: list[str] = field(default_factory=list)  # what could not be fixed; left as is
    held: bool = False  # skipped although its staged content needs work (it has unstaged changes)

    @property
    def changed(self) -> bool:
        return self.new_text is not None and self.new_text != self.original


@dataclass
class Policy:
    """How candidates for one file are judged; fixed by the file as it was read."""

    lang: Language
    repair_syntax: bool
    error_budget: int  # tree-sitter regions a verified file may keep (0 unless a grammar gap)

    @classmethod
    def for_file(cls, lang: Language, check: SyntaxCheck) -> "Policy":
        if lang.name == "python" and check.errors and check.compile_error is None:
            # Python itself accepts the file: tree-sitter's grammar lags the language (new
            # syntax). Rewriting valid code to please the grammar would be wrong.
            return cls(lang, repair_syntax=False, error_budget=check.errors)
        return cls(lang, repair_syntax=True, error_budget=0)

    def blocker(self, check: SyntaxCheck) -> str | None:
        """Why nothing in this file can be verified, before any model runs."""
        if self.lang.name == "python" and check.errors == 0 and check.compile_error:
            return f"Python rejects it ({check.compile_error}) but no broken region was found to re-mask"
        return None

    def accepts(self, kind: str, before: SyntaxCheck, after: SyntaxCheck) -> bool:
        if kind == "syntax_error":
            # A repair must remove a region and must not smuggle in a new hole.
            if after.errors >= before.errors or after.markers > before.markers:
                return False
        elif after.errors > before.errors or after.markers >= before.markers:
            return False  # a fill must consume its marker (and not emit another) and add no error
        if self.lang.name == "python" and after.errors <= self.error_budget:
            return after.compile_error is None
        return True  # other regions still broken: the final check decides

    def problem(self, check: SyntaxCheck) -> str | None:
        """None when the whole file is verified; else what is still wrong."""
        if check.errors > self.error_budget:
            return f"it still does not parse ({check.first_error})"
        return check.compile_error


def _stub_around(marker: Target) -> Target:
    """The whole stub body when a marker sits in one (`pass` / `raise NotImplementedError` go
    too); else the marker line itself."""
    if not marker.scopes:
        return marker
    owner = marker.scopes[-1].qualname or marker.scopes[-1].name
    text = marker.text
    without = text[: marker.start] + text[marker.end :]
    for stub in find_holes(without, marker.language):
        # In `without` the marker's place is the offset marker.start; the stub must touch it.
        if stub.kind == "stub" and stub.symbol == owner and stub.start <= marker.start <= stub.end:
            start, end = stub.start, stub.end + (marker.end - marker.start)
            return dataclasses.replace(
                marker, start=start, end=end, start_byte=len(text[:start].encode("utf-8")),
                end_byte=len(text[:end].encode("utf-8")), kind="stub", symbol=owner,
            )  # fmt: skip
    return marker


HoleKey = tuple[str, str, int]


def _next_hole(path: Path, check: SyntaxCheck, policy: Policy, given_up: set[HoleKey]) -> tuple[Target, HoleKey] | None:
    """The first hole still to try. Holes are keyed by kind, text and occurrence, because a hole
    that could not be fixed stays as it was while offsets after other fixes move."""
    seen: dict[tuple[str, str], int] = {}
    for hole in check.holes:
        if hole.kind not in ("marker", "syntax_error") or (hole.kind == "syntax_error" and not policy.repair_syntax):
            continue  # stubs without a marker are intentional
        base = (hole.kind, hole.hole)
        key = (*base, seen.get(base, 0))
        seen[base] = key[2] + 1
        if key in given_up:
            continue
        target = dataclasses.replace(hole, path=path)
        return (_stub_around(target) if hole.kind == "marker" else target), key
    return None


def describe_hole(target: Target) -> str:
    first, last = target.line_range
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    if target.kind == "syntax_error":
        return f"syntax error at {lines} ({target.detail})" if target.detail else f"syntax error at {lines}"
    if target.kind == "stub":
        return f"stub body of {target.symbol} ({lines})"
    return f"marker at {lines}"


def _too_large(target: Target, filler: HoleFiller) -> str | None:
    """A broken region longer than the hole may grow cannot come back whole: the repair would
    silently drop code, so it is left to the user."""
    if target.kind != "syntax_error":
        return None
    size, limit = filler.count_tokens(target.hole), filler.settings.max_tokens
    if size + REGION_SLACK_TOKENS > limit:
        return f"the broken region is too large to re-mask ({size} tokens; max_tokens is {limit})"
    return None


def _cut_short(hole: Target, candidate: str) -> list[str]:
    """The candidate, and for a syntax repair's insertion its fill cut short at each token-like
    boundary before it, shortest first: a repair adds no more than makes the file parse (after
    `(x * 2` the model writes `) + 10`, and the repair is `)`)."""
    if hole.kind != "syntax_error" or hole.start != hole.end:
        return [candidate]
    fill_end = hole.start + len(candidate) - len(hole.text)
    fill = candidate[hole.start : fill_end]
    cuts = [k for k in range(1, len(fill)) if not fill[k - 1].isspace() and not _same_word(fill[k - 1], fill[k])]
    return [candidate[: hole.start + k] + candidate[fill_end:] for k in cuts] + [candidate]


def _same_word(a: str, b: str) -> bool:
    return (a.isalnum() or a == "_") and (b.isalnum() or b == "_")


def _tries(
    target: Target, filler: HoleFiller, check: SyntaxCheck, max_attempts: int
) -> tuple[list[tuple[Target, int]], str | None]:
    """(hole, attempt) pairs in the order they are tried, and why the whole region is not among
    them. A syntax error first gets its narrow windows (deterministic, so one try each), then the
    whole region: the model's best guess, then samples under other seeds."""
    windows = repair_windows(target, check.compile_line) if target.kind == "syntax_error" else []
    too_large = _too_large(target, filler)
    whole = [] if too_large else [(target, attempt) for attempt in range(max_attempts)]
    return [(window, 0) for window in windows] + whole, too_large


def _repair(
    target: Target, filler: HoleFiller, policy: Policy, before: SyntaxCheck, max_attempts: int
) -> tuple[str, SyntaxCheck] | str:
    """(new text, its check) for the first verified candidate, else why there is none."""
    tries, too_large = _tries(target, filler, before, max_attempts)
    for hole, attempt in tries:
        try:
            candidate = filler.candidate(hole, attempt, max_lines=1 if hole is not target else None)
        except InputError as err:  # e.g. the hole does not fit the model: retrying cannot help
            return str(err)
        if candidate is None:
            continue
        for text in _cut_short(hole, candidate):
            if text == target.text or fill_problem(hole, text):
                continue  # e.g. a piece of the marker left, or the code to repair deleted (as `fill` judges)
            after = check_syntax(text, policy.lang)
            if policy.accepts(target.kind, before, after):
                return text, after
    if too_large:
        return too_large if not tries else f"{too_large}, and no narrower repair passed verification"
    return f"no candidate passed verification in {len(tries)} attempt{'s' if len(tries) != 1 else ''}"


def fix_text(path: Path, text: str, filler: HoleFiller, max_attempts: int = DEFAULT_ATTEMPTS) -> FileFix:
    """Fill the file's markers and repair its syntax errors in memory; writes nothing. The
    filler's model or server is reached only when there is a hole to work on."""
    result = FileFix(path=path, original=text)
    lang = L.detect_language(path, text)
    if not lang.has_grammar:
        result.unverified.append(f"no grammar for {lang.name} files, so no fix could be verified")
        return result
    check = check_syntax(text, lang)
    policy = Policy.for_file(lang, check)
    if blocker := policy.blocker(check):
        if _next_hole(path, check, policy, set()) is not None:
            result.unverified.append(blocker)
        return result
    current, given_up = text, set()
    for _ in range(MAX_HOLES_PER_FILE):
        found = _next_hole(path, check, policy, given_up)
        if found is None:
            break
        target, key = found
        outcome = _repair(target, filler, policy, check, max_attempts)
        if isinstance(outcome, str):
            given_up.add(key)
            result.unverified.append(f"{describe_hole(target)}: {outcome}")
        else:
            current, check = outcome
            result.fixed.append(describe_hole(target))
    else:
        if _next_hole(path, check, policy, given_up) is not None:
            result.unverified.append(f"stopped after {MAX_HOLES_PER_FILE} holes; run the hook again for the rest")
    if current != text:
        if problem := policy.problem(check):
            result.unverified.append(f"{len(result.fixed)} fix(es) not written: {problem}")
            result.fixed = []
        else:
            result.new_text = current
    return result


def needs_work(path: Path, text: str) -> bool:
    """Whether the file holds something the hook would try to fix (no model needed)."""
    lang = L.detect_language(path, text)
    if not lang.has_grammar:
        return False
    check = check_syntax(text, lang)
    policy = Policy.for_file(lang, check)
    # A blocker alone is not work: the hook only reports it when there is a hole to fill.
    return _next_hole(path, check, policy, set()) is not None
