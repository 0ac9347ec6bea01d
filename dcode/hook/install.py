"""Installing the git pre-commit hook that runs `dcode hook run`, and removing it."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dcode.edit.files import atomic_write
from dcode.errors import InputError
from dcode.hook.repo import open_repo, repo_root, run_git

if TYPE_CHECKING:
    import git

HOOK_MARKER = "# installed by dcode"
BACKUP_NAME = "pre-commit.dcode-backup"


def hook_path(repo: git.Repo) -> Path:
    """`.git/hooks/pre-commit`, or wherever `core.hooksPath` and worktrees put it."""
    where = Path(run_git(repo, "rev-parse", "--git-path", "hooks/pre-commit").strip())
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
