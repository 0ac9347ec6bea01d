"""The git side of the hook: the repository, its staged files and their staged content."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcode.context import languages as L
from dcode.errors import InputError

if TYPE_CHECKING:
    import git


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


def run_git(repo: git.Repo, *args: str, binary: bool = False) -> Any:
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


def repo_relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def absolute_path(path: Path) -> Path:
    """An absolute path with its directories resolved but not the file itself (a symlinked
    file must stay recognisable as a symlink)."""
    return path.parent.resolve() / path.name


def regular_file(path: Path) -> bool:
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
    out = run_git(repo, "diff", "--cached", "--name-only", "-z", "--no-renames", "--diff-filter=ACMRT")
    paths = [root / name for name in out.split("\0") if name]
    return [p for p in paths if regular_file(p) and (not supported_only or has_grammar(p))]


def partially_staged(repo: git.Repo, path: Path) -> bool:
    """Whether the working tree differs from the index for `path` (as `git diff` sees it, so
    clean/eol filters count; an untracked file has nothing staged to mix with)."""
    rel = repo_relative(repo_root(repo), absolute_path(path))
    return bool(run_git(repo, "diff", "--no-ext-diff", "--name-only", "-z", "--", rel).strip("\0"))


def staged_text(repo: git.Repo, path: Path) -> str | None:
    """The file's content in the index, or None when it is not there or not UTF-8 text."""
    rel = repo_relative(repo_root(repo), absolute_path(path))
    try:
        data = run_git(repo, "cat-file", "blob", f":0:{rel}", binary=True)
    except InputError:
        return None
    try:
        return None if b"\0" in data else data.decode("utf-8")
    except UnicodeDecodeError:
        return None
