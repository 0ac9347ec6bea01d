"""The hook run: every staged (or named) file fixed, what was done reported, one journal entry
written, and the exit code the pre-commit convention wants."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dcode.context import languages as L
from dcode.edit.change import Change, FileEdit, apply_change, unified_diff
from dcode.edit.files import content_hash, encode_source
from dcode.edit.journal import Journal, JournalEntry
from dcode.edit.targets import read_source
from dcode.errors import EXIT_CHANGED, EXIT_MODEL, EXIT_OK, InputError, ModelError
from dcode.hook.filler import HoleFiller
from dcode.hook.fix import DEFAULT_ATTEMPTS, FileFix, fix_text, needs_work
from dcode.hook.repo import (
    absolute_path,
    open_repo,
    partially_staged,
    regular_file,
    repo_relative,
    repo_root,
    staged_files,
    staged_text,
)

if TYPE_CHECKING:
    import git
    from rich.console import Console

JOURNAL_COMMAND = "hook run"
SKIP_PARTIAL = "it has unstaged changes; stage or stash them, then commit again"


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


def _explicit_files(root: Path, cwd: Path, files: list[str], say: Callable[[str], None]) -> list[Path]:
    paths: list[Path] = []
    for name in files:
        path = absolute_path(Path(name) if Path(name).is_absolute() else cwd / name)
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
    rel = repo_relative(root, path)
    if not regular_file(path):
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


def _report(root: Path, fixes: list[FileFix], verb: str | None, say: Callable[[str], None]) -> None:
    """What was found, before anything is written: each fix as `verb FILE: what` (none without a
    verb: fixes are reported once written), and what could not be fixed."""
    for fix in fixes:
        rel = repo_relative(root, fix.path)
        if fix.changed and verb:
            say(f"{verb} {rel}: {'; '.join(fix.fixed)}")
        for item in fix.unverified:
            say(f"could not fix {rel}: {item}; left as is")


def _stops_commit(root: Path, fixes: list[FileFix], warn_only: bool, say: Callable[[str], None]) -> bool:
    """Whether what the hook could not fix stops the commit (with `warn_only` it is a warning)."""
    names = [repo_relative(root, f.path) for f in fixes if f.unverified or f.held]
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
    if not write:
        verb: str | None = "would fix"
    elif review is not None:
        verb = "proposed fix for"  # nothing is written until the review takes it
    else:
        verb = None  # "fixed FILE" is said once the file is written, below
    _report(root, fixes, verb, say)
    stop = _stops_commit(root, fixes, warn_only, say)
    changed = [f for f in fixes if f.changed]
    if not changed:
        return EXIT_CHANGED if stop else EXIT_OK
    rels = [repo_relative(root, f.path) for f in changed]
    if not write:
        for fix, rel in zip(changed, rels):
            out.write(unified_diff(rel, fix.original, fix.new_text or ""))
        say(f"{len(changed)} file(s) would change; `dcode hook run` applies the fixes")
        return EXIT_CHANGED
    # One journal entry for the whole run, so `dcode undo` reverts it at once; every file is
    # checked against what was read before any is written.
    edits = [FileEdit(f.path, rel, content_hash(encode_source(f.path, f.original)), f.new_text or "")
             for f, rel in zip(changed, rels)]
    change = Change(root, JOURNAL_COMMAND, edits)
    if review is not None:
        written = review(change)  # it says what it applied, hunk by hunk
    else:
        written = [edit.path for edit, _ in apply_change(change)]
        for fix, rel in zip(changed, rels):
            say(f"fixed {rel}: {'; '.join(fix.fixed)}")
    if not written:
        return EXIT_CHANGED  # the fixes were not taken: what is staged still needs them
    rels = [repo_relative(root, path) for path in written]
    say(
        f"changed {len(rels)} file(s); review with `git diff`, then `git add {' '.join(map(shlex.quote, rels))}` "
        "and commit again (`dcode undo` reverts this run)"
    )
    return EXIT_CHANGED
