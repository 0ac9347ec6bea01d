"""Git pre-commit fix-ups: fill marked holes and repair syntax errors in staged files.

`dcode hook run` is the hook entry. For each staged file in a language with a grammar it

* fills every `dcode: fill` marker; a marker inside a stub body (`pass`, `...`,
  `raise NotImplementedError`, `todo!()`, ...) stands for the whole body, so the stub goes too.
  Stub bodies without a marker are intentional and never touched;
* repairs syntax errors by re-masking the broken region and denoising again, up to
  `max_attempts` times per region (attempt 0 greedy, later ones sampled with other seeds).
  A repair may rewrite the region but not delete most of it, and a region too long for the
  hole to hold is left to the user: either would silently drop code.

Verification: every candidate is judged by re-parsing the WHOLE file (tree-sitter: ERROR and
MISSING nodes; Python also `compile()`). A fill must not add errors or markers, a repair must
remove an error region, and the file is written only when the final text parses cleanly. An
unverified fix is never written: the file is left as is and reported.

Python files that `compile()` accepts although tree-sitter reports errors (the grammar lags the
language) are never "repaired"; their markers are still filled.

Partially staged files (the working tree differs from the index) are skipped with a message:
fixing the working tree would mix a fix of unstaged code into what the user stages next, and
fixing the staged blob would mean writing the index (the hook never stages) and merging the fix
into the unstaged edits, which can conflict. Only the staged content is examined, so the message
appears only when what would be committed needs fixing.

Candidates come from a running `dcode serve` for the same model when there is one (no model load
per commit), else from the model loaded in-process; see `HoleFiller`.

The hook never stages or commits. It writes the fixed files through one undo-journal entry
(`dcode undo` reverts the whole run), prints a summary and `git add` advice on stderr, and exits
1 when it changed something (the pre-commit convention), else 0. What it could not fix (a broken
region no candidate repaired, a marker left unfilled, a partially staged file whose staged
content needs work) also exits 1 with the reason, as ruff fails on what it could not fix: broken
code is not committed quietly; `warn_only` makes that a warning. With a `review` (`hook run
--review`), the fixes of all files are one change the user takes whole, by hunk, or not at all.
No model or device: a warning and exit 0, or exit 3 with `strict`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dcode.context import languages as L
from dcode.context.languages import Language
from dcode.edit.change import Change, FileEdit, apply_change
from dcode.edit.files import atomic_write, content_hash, splice_fill
from dcode.edit.journal import Journal, JournalEntry
from dcode.edit.targets import Target, find_holes, read_source, scope_exit
from dcode.errors import EXIT_CHANGED, EXIT_MODEL, EXIT_OK, InputError, ModelError, NoEditError

if TYPE_CHECKING:  # torch is imported only once there is something to fix
    import git
    from rich.console import Console

    from dcode.model.loader import LoadedModel
    from dcode.server import ServerInfo
    from dcode.settings import Settings

JOURNAL_COMMAND = "hook run"
HOOK_MARKER = "# installed by dcode"
BACKUP_NAME = "pre-commit.dcode-backup"
DEFAULT_ATTEMPTS = 4
RETRY_TEMPERATURE = 0.8
MAX_HOLES_PER_FILE = 32  # a bound on the fix loop, in case fills keep producing new holes
REGION_SLACK_TOKENS = 8  # room a repair gets beyond the broken region's own length
MIN_KEPT_FRACTION = 0.5  # a repair must keep at least this share of the region's code characters
SKIP_PARTIAL = "it has unstaged changes; stage or stash them, then commit again"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Fixing one file
# --------------------------------------------------------------------------------------------


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


class HoleFiller:
    """Where the hook's candidates come from: a running `dcode serve` when one answers for this
    model (it stays warm across commits), else `load_model`'s: the model loaded in this process,
    or the configured `endpoint`'s (dcode.remote), which is then the only one tried. Both are reached
    on first use, so a commit with nothing to fix pays for neither; a server that stops answering
    is dropped for the rest of the run and the model is loaded here instead."""

    def __init__(
        self,
        settings: Settings,
        load_model: Callable[[], LoadedModel],
        find_server: Callable[[], ServerInfo | None] | None = None,
        token: str | None = None,
    ) -> None:
        self.settings = settings
        self._load_model = load_model
        self._find_server = find_server
        self.token = token
        self.server: ServerInfo | None = None
        self.model: LoadedModel | None = None
        self._token_counts: dict[str, int] = {}  # a region is measured for its size, then per attempt

    def _server(self) -> ServerInfo | None:
        if self._find_server is not None:
            self.server, self._find_server = self._find_server(), None
        return self.server

    def _local(self) -> LoadedModel:
        if self.model is None:
            self.model = self._load_model()
        return self.model

    def count_tokens(self, text: str) -> int:
        if text not in self._token_counts:
            self._token_counts[text] = self._count(text)
        return self._token_counts[text]

    def _count(self, text: str) -> int:
        if (server := self._server()) is not None:
            from dcode.server import tokenize_via_server

            ids = tokenize_via_server(server, text, self.token)
            if ids is not None:
                return len(ids)
            self.server = None
        return len(self._local().tokenizer.encode(text))

    def candidate(self, target: Target, attempt: int) -> str | None:
        """One candidate text for the whole file, or None when the model produced nothing.
        Attempt 0 is the model's best guess; later ones are sampled under other seeds."""
        if attempt == 0:
            overrides: dict[str, Any] = {"temperature": 0.0}
        else:
            overrides = {"temperature": RETRY_TEMPERATURE, "seed": self.settings.seed + attempt}
        if (server := self._server()) is not None:
            from dcode.server import complete_via_server

            response = complete_via_server(server, self._server_request(target, overrides), self.token)
            if response is not None and _error_code(response) != "internal_error":
                return _server_candidate(target, response)
            self.server = None
        return self._local_candidate(target, overrides)

    def _local_candidate(self, target: Target, overrides: dict[str, Any]) -> str | None:
        from dcode.edit.proposal import Proposal
        from dcode.workflow import propose_target

        try:
            for item in propose_target(target, "fill", self._local(), self.settings, **overrides):
                if isinstance(item, Proposal):
                    return None if item.problem else item.new_text(target.text)
        except NoEditError:
            return None
        return None

    def _server_request(self, target: Target, overrides: dict[str, Any]) -> dict[str, Any]:
        """The /infill request that decodes as `_local_candidate` would: the hook's own options,
        not the server's defaults; the server gathers the repository context."""
        from dcode.complete import request_fields
        from dcode.workflow import fill_options

        options = fill_options(target, "fill", self.settings, self.count_tokens, **overrides)
        return {
            "input_prefix": target.text[: target.start], "input_suffix": target.text[target.end :],
            "filename": str(target.path.resolve()), **request_fields(options),
        }


def _error_code(response: dict) -> str | None:
    error = response.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _server_candidate(target: Target, response: dict) -> str | None:
    """The whole file with the server's fill in the hole; its errors become ours."""
    from dcode.server import model_error

    if (err := model_error(response)) is not None:
        raise err
    if code := _error_code(response):
        raise InputError(str(response["error"].get("message") or code))
    content = response.get("content")
    if not isinstance(content, str):
        return None
    content = content[: scope_exit(target, content)]  # as propose_target cuts a local fill
    return splice_fill(target.text, target.start, target.end, content) if content.strip() else None


def _code_chars(text: str) -> int:
    return sum(not c.isspace() for c in text)


def _too_large(target: Target, filler: HoleFiller) -> str | None:
    """A broken region longer than the hole may grow cannot come back whole: the repair would
    silently drop code, so it is left to the user."""
    if target.kind != "syntax_error":
        return None
    size, limit = filler.count_tokens(target.hole), filler.settings.max_tokens
    if size + REGION_SLACK_TOKENS > limit:
        return f"the broken region is too large to re-mask ({size} tokens; max_tokens is {limit})"
    return None


def _drops_code(target: Target, candidate: str) -> bool:
    """Whether a syntax repair deleted most of the region instead of mending it: re-masking may
    rewrite a broken region, not remove the user's code until what is left parses."""
    if target.kind != "syntax_error":
        return False
    inserted = candidate[target.start : len(candidate) - (len(target.text) - target.end)]
    return _code_chars(inserted) < MIN_KEPT_FRACTION * _code_chars(target.hole)


def _repair(
    target: Target, filler: HoleFiller, policy: Policy, before: SyntaxCheck, max_attempts: int
) -> tuple[str, SyntaxCheck] | str:
    """(new text, its check) for the first verified candidate, else why there is none."""
    if reason := _too_large(target, filler):
        return reason
    for attempt in range(max_attempts):
        try:
            candidate = filler.candidate(target, attempt)
        except InputError as err:  # e.g. the hole does not fit the model: retrying cannot help
            return str(err)
        if candidate is None or candidate == target.text or _drops_code(target, candidate):
            continue
        after = check_syntax(candidate, policy.lang)
        if policy.accepts(target.kind, before, after):
            return candidate, after
    return f"no candidate passed verification in {max_attempts} attempt{'s' if max_attempts != 1 else ''}"


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


# --------------------------------------------------------------------------------------------
# Git
# --------------------------------------------------------------------------------------------


def open_repo(start: Path) -> git.Repo:
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import without a git executable
        raise InputError(f"the hook needs git: {exc}") from None
    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise InputError(f"{start} is not inside a git repository") from None
    if repo.bare or repo.working_tree_dir is None:
        raise InputError(f"{repo.git_dir} is a bare repository; the hook needs a working tree")
    return repo


def repo_root(repo: git.Repo) -> Path:
    return Path(repo.working_tree_dir).resolve()  # type: ignore[arg-type]


def _git(repo: git.Repo, *args: str, binary: bool = False) -> Any:
    """Run git in the work tree. The environment is inherited, so the GIT_INDEX_FILE a commit
    hands its hook is the index we read. No optional locks: never rewrite the index's stat
    data while `git commit` holds it; literal pathspecs: file names are not patterns."""
    import git as gitpython

    try:
        return repo.git.execute(
            ["git", "--no-optional-locks", "--literal-pathspecs", *args],
            stdout_as_string=not binary, strip_newline_in_stdout=False,
        )  # fmt: skip
    except gitpython.GitCommandError as exc:
        detail = (exc.stderr or "").strip().splitlines()
        raise InputError(f"git {args[0]} failed: {detail[-1] if detail else exc}") from None


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _absolute(path: Path) -> Path:
    """An absolute path with its directories resolved but not the file itself (a symlinked
    file must stay recognisable as a symlink)."""
    return path.parent.resolve() / path.name


def _regular_file(path: Path) -> bool:
    # A symlink's blob is its target path; writing through it would edit another file.
    return path.is_file() and not path.is_symlink()


def has_grammar(path: Path) -> bool:
    """Whether dcode can parse the file: by extension, else by a shebang line."""
    name = L.language_for_extension(path)
    if name is None:
        try:
            with path.open("rb") as f:
                first = f.readline(200).decode("utf-8", "replace")
        except OSError:
            return False
        name = L.language_from_shebang(first)
    return name is not None and L.get_language(name).has_grammar


def staged_files(repo: git.Repo, supported_only: bool = True) -> list[Path]:
    """Absolute paths of files staged as added, copied, modified, renamed or retyped (works
    before the first commit too), limited by default to languages with a grammar."""
    root = repo_root(repo)
    out = _git(repo, "diff", "--cached", "--name-only", "-z", "--no-renames", "--diff-filter=ACMRT")
    paths = [root / name for name in out.split("\0") if name]
    return [p for p in paths if _regular_file(p) and (not supported_only or has_grammar(p))]


def partially_staged(repo: git.Repo, path: Path) -> bool:
    """Whether the working tree differs from the index for `path` (as `git diff` sees it, so
    clean/eol filters count; an untracked file has nothing staged to mix with)."""
    rel = _rel(repo_root(repo), _absolute(path))
    return bool(_git(repo, "diff", "--no-ext-diff", "--name-only", "-z", "--", rel).strip("\0"))


def staged_text(repo: git.Repo, path: Path) -> str | None:
    """The file's content in the index, or None when it is not there or not UTF-8 text."""
    rel = _rel(repo_root(repo), _absolute(path))
    try:
        data = _git(repo, "cat-file", "blob", f":0:{rel}", binary=True)
    except InputError:
        return None
    try:
        return None if b"\0" in data else data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unstaged_fix_of_ours(root: Path, path: Path) -> bool:
    """Whether the working-tree file is exactly what the last hook run wrote there."""
    try:
        current = content_hash(path.read_bytes())
        for entry_file in reversed(Journal(root).entries()[-20:]):
            entry = JournalEntry.from_json(json.loads(entry_file.read_text(encoding="utf-8")))
            if entry.command != JOURNAL_COMMAND:
                continue
            for change in entry.files:
                if change.path == path.resolve():
                    return change.after_hash == current
    except (OSError, ValueError, KeyError, TypeError):
        return False  # an unreadable journal only costs the friendlier message
    return False


# --------------------------------------------------------------------------------------------
# The hook run
# --------------------------------------------------------------------------------------------


def _explicit_files(root: Path, cwd: Path, files: list[str], say: Callable[[str], None]) -> list[Path]:
    paths: list[Path] = []
    for name in files:
        path = _absolute(Path(name) if Path(name).is_absolute() else cwd / name)
        try:
            path.relative_to(root)
        except ValueError:
            say(f"skipped {name}: not in this repository")
            continue
        if path not in paths:
            paths.append(path)
    return paths


def _handle_file(
    repo: git.Repo, path: Path, filler: HoleFiller, max_attempts: int, say: Callable[[str], None]
) -> FileFix | None:
    root = repo_root(repo)
    rel = _rel(root, path)
    if not _regular_file(path):
        say(f"skipped {rel}: {'a symbolic link' if path.is_symlink() else 'not a regular file'}")
        return None
    if partially_staged(repo, path):
        staged = staged_text(repo, path)
        if staged is None or needs_work(path, staged):  # quiet when what gets committed is fine
            if _unstaged_fix_of_ours(root, path):
                say(f"{rel}: the fix dcode wrote is not staged yet; `git add {shlex.quote(rel)}` to commit it")
            else:
                say(f"skipped {rel}: {SKIP_PARTIAL}")
            if staged is not None:  # what would be committed needs the fix: the commit must wait
                return FileFix(path=path, original=staged, held=True)
        return None
    try:
        text = read_source(path)
    except InputError as err:
        say(f"skipped {rel}: {err}")
        return None
    if not L.detect_language(path, text).has_grammar:
        say(f"skipped {rel}: dcode has no grammar for it, so no fix could be verified")
        return None
    if not needs_work(path, text):
        return None
    return fix_text(path, text, filler, max_attempts)


def _report(root: Path, fixes: list[FileFix], write: bool, say: Callable[[str], None]) -> None:
    for fix in fixes:
        rel = _rel(root, fix.path)
        if fix.changed:
            say(f"{'fixed' if write else 'would fix'} {rel}: {'; '.join(fix.fixed)}")
        for item in fix.unverified:
            say(f"could not fix {rel}: {item}; left as is")


def _stops_commit(root: Path, fixes: list[FileFix], warn_only: bool, say: Callable[[str], None]) -> bool:
    """Whether what the hook could not fix stops the commit (with `warn_only` it is a warning)."""
    names = [_rel(root, f.path) for f in fixes if f.unverified or f.held]
    if not names:
        return False
    listed = f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} still broken (see above)"
    if warn_only:
        say(f"warning: {listed}; committing anyway (--warn-only)")
        return False
    say(f"commit stopped: {listed}; fix by hand, or `git commit --no-verify` to commit anyway")
    return True


def _model_unavailable(err: ModelError, strict: bool, say: Callable[[str], None]) -> int:
    if strict:
        say(f"error: cannot load the model: {err}")
        return EXIT_MODEL
    say(f"warning: skipped: cannot load the model ({err}); nothing was changed (--strict makes this an error)")
    return EXIT_OK


def run_hook(
    files: list[str] | None,
    filler: HoleFiller,
    *,
    write: bool,
    strict: bool,
    console: Console,
    out: TextIO | None = None,
    cwd: Path | None = None,
    max_attempts: int = DEFAULT_ATTEMPTS,
    warn_only: bool = False,
    review: Callable[[Change], list[Path]] | None = None,
) -> int:
    """The hook (`write=True`) or `check` (`write=False`: diffs on `out`, nothing written).
    `review` takes the fixes of all files as one change and returns the files it wrote.

    Returns the exit code: 1 when files were (or would be) changed or a staged file is left
    broken (unless `warn_only`), else 0; 3 for a missing model with `strict`.
    """
    out = out if out is not None else sys.stdout
    cwd = (cwd or Path.cwd()).resolve()
    repo = open_repo(cwd)
    root = repo_root(repo)

    def say(message: str) -> None:
        console.print(f"dcode hook: {message}", markup=False, highlight=False)

    paths = _explicit_files(root, cwd, files, say) if files else staged_files(repo)
    fixes: list[FileFix] = []
    try:
        for path in paths:
            fix = _handle_file(repo, path, filler, max_attempts, say)
            if fix is not None:
                fixes.append(fix)
    except ModelError as err:  # nothing has been written yet: all writes happen below
        return _model_unavailable(err, strict, say)
    _report(root, fixes, write, say)
    stop = _stops_commit(root, fixes, warn_only, say)
    changed = [f for f in fixes if f.changed]
    if not changed:
        return EXIT_CHANGED if stop else EXIT_OK
    rels = [_rel(root, f.path) for f in changed]
    if not write:
        for fix, rel in zip(changed, rels):
            out.write(_unified_diff(rel, fix.original, fix.new_text or ""))
        say(f"{len(changed)} file(s) would change; `dcode hook run` applies the fixes")
        return EXIT_CHANGED
    # One journal entry for the whole run, so `dcode undo` reverts it at once; every file is
    # checked against what was read before any is written.
    edits = [FileEdit(f.path, rel, content_hash(f.original.encode("utf-8")), f.new_text or "")
             for f, rel in zip(changed, rels)]
    change = Change(root, JOURNAL_COMMAND, edits)
    written = review(change) if review is not None else [edit.path for edit, _ in apply_change(change)]
    if not written:
        return EXIT_CHANGED  # the fixes were not taken: what is staged still needs them
    rels = [_rel(root, path) for path in written]
    say(
        f"changed {len(rels)} file(s); review with `git diff`, then `git add {' '.join(map(shlex.quote, rels))}` "
        "and commit again (`dcode undo` reverts this run)"
    )
    return EXIT_CHANGED


def _unified_diff(rel: str, old: str, new: str) -> str:
    from dcode.ui import unified_diff

    return unified_diff(rel, old, new)


# --------------------------------------------------------------------------------------------
# Installing the git hook
# --------------------------------------------------------------------------------------------


def hook_path(repo: git.Repo) -> Path:
    """`.git/hooks/pre-commit`, or wherever `core.hooksPath` and worktrees put it."""
    where = Path(_git(repo, "rev-parse", "--git-path", "hooks/pre-commit").strip())
    return where if where.is_absolute() else repo_root(repo) / where


def hook_script(python: str | None = None) -> str:
    python = shlex.quote(python or sys.executable)
    return (
        "#!/bin/sh\n"
        f"{HOOK_MARKER}: `dcode hook uninstall` removes it\n"
        "# Fills `dcode: fill` markers and repairs syntax errors in staged files. It never stages:\n"
        "# after it changed files (exit 1), review them, `git add` them and commit again.\n"
        "# A hook that `dcode hook install --force` replaced runs after it, as before.\n"
        f"python={python}\n"
        f'previous="$(dirname "$0")/{BACKUP_NAME}"\n'
        "status=0\n"
        'if [ -x "$python" ]; then\n'
        '    "$python" -m dcode hook run || status=$?\n'
        "else\n"
        '    echo "dcode hook: $python is gone; skipped (run \\`dcode hook install\\` again)" >&2\n'
        "fi\n"
        'if [ -f "$previous" ] && [ -x "$previous" ]; then\n'
        '    "$previous" "$@" || exit $?\n'
        "fi\n"
        "exit $status\n"
    )


def is_dcode_hook(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # e.g. a dangling symlink: somebody else's
    return any(line.startswith(HOOK_MARKER) for line in text.splitlines())


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def install_hook(repo_root: Path, force: bool = False) -> str:
    """Install the pre-commit hook; returns what was done. A foreign hook is replaced only with
    `force`, and then kept as `pre-commit.dcode-backup` (never overwriting an older backup)."""
    hook = hook_path(open_repo(repo_root))
    backup = hook.with_name(BACKUP_NAME)
    note = ""
    if _present(hook) and not is_dcode_hook(hook):
        if not force:
            raise InputError(
                f"{hook} exists and was not installed by dcode; `dcode hook install --force` replaces it "
                f"(keeping it as {backup.name})"
            )
        if _present(backup):
            raise InputError(f"{backup} already exists; move it away before replacing {hook.name}")
        os.replace(hook, backup)
        note = f"; the previous hook is kept as {backup} and runs after dcode's (`dcode hook uninstall` restores it)"
    hook.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(hook, hook_script().encode("utf-8"))
    hook.chmod(hook.stat().st_mode | 0o111)
    return f"installed {hook}{note}"


def uninstall_hook(repo_root: Path) -> str:
    """Remove dcode's hook and put back the one it replaced; refuses to remove a foreign hook."""
    hook = hook_path(open_repo(repo_root))
    backup = hook.with_name(BACKUP_NAME)
    if not _present(hook):
        if _present(backup):
            os.replace(backup, hook)
            return f"no dcode hook was installed; restored {hook} from {backup.name}"
        return f"no pre-commit hook at {hook}; nothing to do"
    if not is_dcode_hook(hook):
        raise InputError(f"{hook} was not installed by dcode; leaving it alone")
    hook.unlink()
    if _present(backup):
        os.replace(backup, hook)
        return f"removed dcode's hook and restored the previous one from {backup.name}"
    return f"removed {hook}"
