"""The git pre-commit hook on real repositories in tmp dirs, driven by scripted models whose
output is known, so every assertion is about the hook and not about model quality."""

from __future__ import annotations

import io
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from dcode.edit.journal import Journal
from dcode.errors import InputError, ModelError
from dcode.hook.filler import HoleFiller
from dcode.hook.install import BACKUP_NAME, HOOK_MARKER, install_hook, uninstall_hook
from dcode.hook.repo import open_repo, staged_files
from dcode.hook.run import run_hook
from dcode.model.loader import LoadedModel
from dcode.server import DcodeServer, ServerInfo
from dcode.settings import Settings
from tests.conftest import REPO_ROOT, compiles


BROKEN = "import os\n\n\ndef add(a, b):\n    return a +\n"
REPAIR = "def add(a, b):\n    return a + b\n"  # the model's replacement for the broken region
FIXED = "import os\n\n\ndef add(a, b):\n    return a + b\n"

STUBS = '''def mean(values):
    """Mean of a non-empty list."""
    # dcode: fill
    raise NotImplementedError


def keep():
    pass
'''
MEAN_BODY = "    return sum(values) / len(values)\n"
STUBS_FILLED = '''def mean(values):
    """Mean of a non-empty list."""
    return sum(values) / len(values)


def keep():
    pass
'''


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """An empty git repository; git and dcode see no config, cache or state outside tmp."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_CONFIG_GLOBAL", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "DCODE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "test@example.com")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    monkeypatch.chdir(root)
    return root


def stage(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text, encoding="utf-8")
    git(root, "add", name)
    return path


def index_blob(root: Path, name: str) -> str:
    return git(root, "show", f":{name}")


class Loader:
    """model_loader that counts calls (the hook must load lazily) or fails like a missing model."""

    def __init__(self, model: LoadedModel | None = None, error: Exception | None = None) -> None:
        self.model, self.error, self.calls = model, error, 0

    def __call__(self) -> LoadedModel:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert self.model is not None, "the hook loaded a model it did not need"
        return self.model


def hook(loader: Loader, *, write: bool = True, strict: bool = False, files: list[str] | None = None,
         attempts: int = 4, server: Callable[[], ServerInfo | None] | None = None, warn_only: bool = False,
         review: Callable | None = None) -> tuple[int, str, str]:
    """(exit code, stderr messages, stdout) of one hook run in the current directory."""
    err, out = io.StringIO(), io.StringIO()
    console = Console(file=err, width=400, no_color=True)
    filler = HoleFiller(Settings(max_tokens=64), loader, server)
    code = run_hook(files, filler, write=write, strict=strict, console=console, out=out, max_attempts=attempts,
                    warn_only=warn_only, review=review)
    return code, err.getvalue(), out.getvalue()


# --------------------------------------------------------------------------------------------
# Fixing staged files
# --------------------------------------------------------------------------------------------


def test_staged_syntax_error_is_repaired_and_a_second_run_changes_nothing(repo, emitting):
    stage(repo, "README.md", "notes\n")
    git(repo, "commit", "-q", "-m", "start")
    path = stage(repo, "calc.py", BROKEN)
    loader = Loader(emitting(REPAIR))

    code, messages, _ = hook(loader)
    assert code == 1
    assert path.read_text(encoding="utf-8") == FIXED and compiles(FIXED)
    assert index_blob(repo, "calc.py") == BROKEN  # the hook never stages
    assert git(repo, "diff", "--cached", "--name-only").split() == ["calc.py"]
    assert "fixed calc.py: syntax error at lines 4-5" in messages and "git add calc.py" in messages
    assert loader.calls == 1
    assert len(Journal(repo).entries()) == 1

    after_first = path.read_bytes()
    code, messages, _ = hook(loader)
    assert code == 1  # what would be committed is still broken
    assert path.read_bytes() == after_first and index_blob(repo, "calc.py") == BROKEN
    assert len(Journal(repo).entries()) == 1  # nothing new recorded
    assert "fix dcode wrote is not staged yet" in messages

    git(repo, "add", "calc.py")  # the user accepts the fix: now nothing is left to do
    assert hook(loader)[0] == 0
    assert path.read_bytes() == after_first


def test_marker_in_a_stub_body_fills_the_body_and_a_plain_stub_is_untouched(repo, emitting):
    path = stage(repo, "stats.py", STUBS)  # before the first commit: no HEAD yet
    code, messages, _ = hook(Loader(emitting(MEAN_BODY)))
    assert code == 1
    assert path.read_text(encoding="utf-8") == STUBS_FILLED  # `raise NotImplementedError` went too
    assert "stub body of mean" in messages


@pytest.mark.parametrize("through_server", [False, True])
def test_a_fill_that_runs_past_its_function_is_cut_at_the_functions_end(repo, emitting, serving, through_server):
    path = stage(repo, "stats.py", STUBS)
    model = emitting(MEAN_BODY + "\n\ndef median(values):\n    return sorted(values)[len(values) // 2]\n")
    if through_server:
        server = serving(model)
        assert hook(Loader(), server=lambda: info(server.port))[0] == 1
    else:
        assert hook(Loader(model))[0] == 1
    assert path.read_text(encoding="utf-8") == STUBS_FILLED


def test_a_fix_that_does_not_parse_is_not_written_and_the_commit_stops(repo, emitting):
    path = stage(repo, "calc.py", BROKEN)
    model = emitting("def add(a, b:\n    ((((\n")
    code, messages, _ = hook(Loader(model), attempts=4)
    assert code == 1  # as ruff fails on what it could not fix: broken code is not committed quietly
    assert path.read_text(encoding="utf-8") == BROKEN
    assert "could not fix calc.py: syntax error at lines 4-5" in messages and "left as is" in messages
    assert "commit stopped: calc.py is still broken" in messages
    # Bounded: the two one-line windows (an insertion after `return a +`, then that line), then
    # the four attempts at the whole region; a run may grow its hole once.
    assert "no candidate passed verification in 6 attempts" in messages
    assert len(model.net.calls) <= 2 * 6
    assert Journal(repo).entries() == []

    code, messages, _ = hook(Loader(model), attempts=1, warn_only=True)
    assert code == 0 and "warning: calc.py is still broken" in messages
    assert "could not fix calc.py: syntax error at lines 4-5" in messages


def test_the_cli_hook_fails_on_what_it_cannot_fix_and_says_why(repo, emitting, monkeypatch):
    from typer.testing import CliRunner

    from dcode.cli.app import app

    stage(repo, "calc.py", BROKEN)
    model = emitting("def add(a, b:\n    ((((\n")
    monkeypatch.setattr("dcode.cli.session.load", lambda settings: model)
    result = CliRunner().invoke(app, ["hook", "run", "--no-server", "--attempts", "1"])
    assert result.exit_code == 1
    assert "could not fix calc.py: syntax error at lines 4-5" in result.stderr
    result = CliRunner().invoke(app, ["hook", "check", "--no-server", "--attempts", "1", "--warn-only"])
    assert result.exit_code == 0 and "warning: calc.py is still broken" in result.stderr


def test_a_repair_that_deletes_the_broken_code_is_not_written(repo, emitting):
    path = stage(repo, "calc.py", BROKEN)
    code, messages, _ = hook(Loader(emitting("pass\n")), attempts=2)  # parses, but `add` is gone
    assert code == 1
    assert path.read_text(encoding="utf-8") == BROKEN
    assert "could not fix calc.py" in messages


UNCLOSED = "def double(x):\n    result = (x * 2\n    return result\n\n\ndef triple(x):\n    return x * 3\n"


def test_an_unclosed_bracket_is_closed_where_it_was_left_open(repo, emitting, monkeypatch):
    # tree-sitter's error region is the whole function. The repair first inserts where line 2's
    # code ends, keeping only as much of what the model wrote there as makes the file parse.
    path = stage(repo, "m.py", UNCLOSED)
    holes: list[str] = []
    original = HoleFiller.candidate
    monkeypatch.setattr(HoleFiller, "candidate", lambda self, target, *args, **kwargs: (
        holes.append(target.text[: target.start].rsplit("\n", 1)[-1] + "|" + target.hole) or
        original(self, target, *args, **kwargs)))
    code, messages, _ = hook(Loader(emitting(") + 10")))
    assert code == 1 and "fixed m.py: syntax error at lines 1-3" in messages
    assert path.read_text(encoding="utf-8") == UNCLOSED.replace("(x * 2\n", "(x * 2)\n")
    assert holes == ["    result = (x * 2|"]  # one try: the insertion


def test_a_fill_that_python_rejects_is_not_written(repo, emitting):
    # tree-sitter accepts `return` at module level; compile() does not.
    path = stage(repo, "script.py", "import sys\n# dcode: fill\n")
    code, messages, _ = hook(Loader(emitting("return 1\n")), attempts=2)
    assert code == 1
    assert path.read_text(encoding="utf-8") == "import sys\n# dcode: fill\n"
    assert "could not fix script.py: marker at line 2" in messages


def test_partially_staged_file_is_skipped_and_keeps_its_unstaged_edits(repo, emitting):
    path = stage(repo, "calc.py", BROKEN)
    worktree = (BROKEN + "\n# unstaged work in progress\r\n").encode("utf-8")
    path.write_bytes(worktree)
    clean = stage(repo, "clean.py", "x = 1\n")
    clean.write_text("x = 1\n# dcode: fill\n", encoding="utf-8")  # unstaged hole, staged content fine
    loader = Loader(emitting(REPAIR))

    code, messages, _ = hook(loader)
    assert code == 1  # calc.py's staged content is broken and was not fixed
    assert path.read_bytes() == worktree  # byte-exact
    assert index_blob(repo, "calc.py") == BROKEN
    assert "skipped calc.py: it has unstaged changes; stage or stash them, then commit again" in messages
    assert "clean.py" not in messages  # what would be committed needs nothing
    assert clean.read_text(encoding="utf-8") == "x = 1\n# dcode: fill\n"
    assert loader.calls == 0


def test_check_prints_the_diff_and_writes_nothing(repo, emitting):
    path = stage(repo, "calc.py", BROKEN)
    code, messages, diff = hook(Loader(emitting(REPAIR)), write=False)
    assert code == 1
    assert "--- a/calc.py\n+++ b/calc.py\n" in diff
    assert "-    return a +\n" in diff and "+    return a + b\n" in diff
    assert "would fix calc.py" in messages
    assert path.read_text(encoding="utf-8") == BROKEN
    assert Journal(repo).entries() == []


def test_undo_reverts_the_whole_hook_run(repo, emitting):
    a = stage(repo, "a.py", BROKEN)
    b = stage(repo, "b.py", BROKEN.replace("import os", "import re"))
    assert hook(Loader(emitting(REPAIR)))[0] == 1
    assert a.read_text(encoding="utf-8") == FIXED
    assert b.read_text(encoding="utf-8") == FIXED.replace("import os", "import re")
    assert len(Journal(repo).entries()) == 1  # one entry for the whole run
    entry = Journal(repo).undo()
    assert entry.command == "hook run"
    assert a.read_text(encoding="utf-8") == BROKEN
    assert b.read_text(encoding="utf-8") == BROKEN.replace("import os", "import re")


def review_with(monkeypatch, answers: str) -> Callable:
    """The CLI's review of the hook's fix-ups, on a pretend terminal that types `answers`."""
    from dcode.cli.review import review_fixups

    monkeypatch.setattr("dcode.cli.session.interactive", lambda: True)
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    return review_fixups


def test_one_review_for_fixes_across_files_applies_the_chosen_hunks(repo, emitting, monkeypatch, capsys):
    a = stage(repo, "a.py", BROKEN)
    b = stage(repo, "b.py", BROKEN.replace("import os", "import re"))
    code, messages, _ = hook(Loader(emitting(REPAIR)), review=review_with(monkeypatch, "h\n2\n"))
    assert code == 1
    shown = capsys.readouterr()
    assert "+++ b/a.py\n@@ -2,4 +2,4 @@ hunk 1\n" in shown.out and "+++ b/b.py\n@@ -2,4 +2,4 @@ hunk 2\n" in shown.out
    assert "accept [h]unks" in shown.err and "applied hunk 2 to b.py" in shown.err
    assert a.read_text(encoding="utf-8") == BROKEN  # hunk 1 was not taken
    assert b.read_text(encoding="utf-8") == FIXED.replace("import os", "import re")
    assert "changed 1 file(s)" in messages and "git add b.py" in messages
    assert len(Journal(repo).entries()) == 1
    Journal(repo).undo()
    assert b.read_text(encoding="utf-8") == BROKEN.replace("import os", "import re")


def test_fixes_kept_pending_are_accepted_later_by_hunk(repo, emitting, monkeypatch):
    from typer.testing import CliRunner

    from dcode.cli.app import app

    a = stage(repo, "a.py", BROKEN)
    b = stage(repo, "b.py", BROKEN.replace("import os", "import re"))
    assert hook(Loader(emitting(REPAIR)), review=review_with(monkeypatch, "k\n"))[0] == 1
    assert a.read_text(encoding="utf-8") == BROKEN and Journal(repo).entries() == []
    assert CliRunner().invoke(app, ["refine"]).exit_code == 2  # fix-ups are accepted or rejected, not refined
    result = CliRunner().invoke(app, ["accept", "--hunks", "1"])
    assert result.exit_code == 0, result.output
    assert a.read_text(encoding="utf-8") == FIXED
    assert b.read_text(encoding="utf-8") == BROKEN.replace("import os", "import re")
    assert Journal(repo).undo().command == "hook run"
    assert a.read_text(encoding="utf-8") == BROKEN


def test_files_argument_limits_the_run(repo, emitting):
    a = stage(repo, "a.py", BROKEN)
    b = stage(repo, "b.py", BROKEN)
    assert hook(Loader(emitting(REPAIR)), files=["b.py"])[0] == 1
    assert a.read_text(encoding="utf-8") == BROKEN
    assert b.read_text(encoding="utf-8") == FIXED


def test_staged_files_lists_supported_staged_files_only(repo):
    for name in ("a.py", "notes.txt", "lib.rs"):
        stage(repo, name, "x\n")
    (repo / "untracked.py").write_text("x = (\n", encoding="utf-8")
    git(repo, "commit", "-q", "-m", "start")
    (repo / "lib.rs").write_text("fn main() {}\n", encoding="utf-8")
    git(repo, "add", "lib.rs")
    git(repo, "rm", "-q", "a.py")
    assert staged_files(open_repo(repo)) == [repo.resolve() / "lib.rs"]


def test_nothing_to_fix_never_loads_the_model(repo):
    stage(repo, "ok.py", "def add(a, b):\n    return a + b\n\n\ndef keep():\n    pass\n")
    loader = Loader()
    assert hook(loader)[0] == 0
    assert loader.calls == 0


def test_no_model_skips_with_a_warning_unless_strict(repo):
    path = stage(repo, "calc.py", BROKEN)
    missing = Loader(error=ModelError("/nowhere: model directory not found"))
    code, messages, _ = hook(missing)
    assert code == 0
    assert "warning: skipped: cannot load the model" in messages and "/nowhere" in messages
    code, messages, _ = hook(missing, strict=True)
    assert code == 3
    assert "error: cannot load the model" in messages
    assert path.read_text(encoding="utf-8") == BROKEN


# --------------------------------------------------------------------------------------------
# Through a running `dcode serve`
# --------------------------------------------------------------------------------------------


@pytest.fixture
def serving() -> Iterator[Callable[[LoadedModel], DcodeServer]]:
    """A loopback server on a free port whose warm model is the given one."""
    started: list[DcodeServer] = []

    def start(model: LoadedModel) -> DcodeServer:
        server = DcodeServer({"device": "cpu"}, "127.0.0.1", 0)
        server.completer.model = model
        server.start_background()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.close()


def info(port: int) -> ServerInfo:
    return ServerInfo(pid=os.getpid(), host="127.0.0.1", port=port, token_required=False, model=None)


def test_a_running_server_does_the_work_and_the_model_is_never_loaded(repo, emitting, serving):
    path = stage(repo, "calc.py", BROKEN)
    stats = stage(repo, "stats.py", STUBS)
    server = serving(emitting(REPAIR))
    loader = Loader()  # fails the test if the hook loads a model itself
    code, messages, _ = hook(loader, server=lambda: info(server.port), files=["calc.py"])
    assert code == 1 and path.read_text(encoding="utf-8") == FIXED
    assert "fixed calc.py: syntax error at lines 4-5" in messages
    assert loader.calls == 0 and server.model_calls >= 2  # /tokenize for the region's size, then /infill
    assert stats.read_text(encoding="utf-8") == STUBS

    server.completer.model = emitting(MEAN_BODY)
    assert hook(loader, server=lambda: info(server.port), files=["stats.py"])[0] == 1
    assert stats.read_text(encoding="utf-8") == STUBS_FILLED and loader.calls == 0


def test_a_server_that_does_not_answer_falls_back_to_the_local_model(repo, emitting):
    path = stage(repo, "calc.py", BROKEN)
    with socket.socket() as sock:  # a port nothing listens on: the server died after advertising it
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    loader = Loader(emitting(REPAIR))
    code, _, _ = hook(loader, server=lambda: info(dead_port))
    assert code == 1 and path.read_text(encoding="utf-8") == FIXED
    assert loader.calls == 1


def test_the_servers_model_errors_are_the_hooks(repo, serving):
    path = stage(repo, "calc.py", BROKEN)
    server = DcodeServer({"device": "cpu", "model": str(repo / "no-model")}, "127.0.0.1", 0)
    server.start_background()
    try:
        code, messages, _ = hook(Loader(), server=lambda: info(server.port), strict=True)
    finally:
        server.shutdown()
        server.close()
    assert code == 3 and "cannot load the model" in messages and "no-model" in messages
    assert path.read_text(encoding="utf-8") == BROKEN


# --------------------------------------------------------------------------------------------
# Installing the git hook
# --------------------------------------------------------------------------------------------


def test_install_refuses_a_foreign_hook_and_force_keeps_a_backup(repo):
    hook_file = repo / ".git" / "hooks" / "pre-commit"
    foreign = "#!/bin/sh\nexec make lint\n"
    hook_file.write_text(foreign, encoding="utf-8")
    with pytest.raises(InputError, match="not installed by dcode"):
        install_hook(repo)
    assert hook_file.read_text(encoding="utf-8") == foreign

    message = install_hook(repo, force=True)
    backup = hook_file.with_name(BACKUP_NAME)
    assert backup.read_text(encoding="utf-8") == foreign and str(backup) in message
    script = hook_file.read_text(encoding="utf-8")
    assert HOOK_MARKER in script and sys.executable in script and "-m dcode hook run" in script
    assert hook_file.stat().st_mode & stat.S_IXUSR
    install_hook(repo)  # our own hook is simply refreshed
    assert backup.read_text(encoding="utf-8") == foreign

    uninstall_hook(repo)
    assert hook_file.read_text(encoding="utf-8") == foreign and not backup.exists()
    with pytest.raises(InputError, match="not installed by dcode"):
        uninstall_hook(repo)
    assert hook_file.read_text(encoding="utf-8") == foreign


def test_install_and_uninstall_without_a_previous_hook(repo):
    hook_file = repo / ".git" / "hooks" / "pre-commit"
    install_hook(repo)
    assert hook_file.is_file()
    assert "removed" in uninstall_hook(repo)
    assert not hook_file.exists()
    assert "nothing to do" in uninstall_hook(repo)


def test_pre_commit_framework_manifest():
    yaml = pytest.importorskip("yaml")  # PyYAML is not a dcode dependency
    (entry,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert entry["id"] == "dcode" and entry["entry"] == "dcode hook run"
    assert entry["language"] in ("system", "unsupported") and entry["require_serial"] is True
    assert {"python", "javascript", "ts", "rust", "go", "java", "c", "c++"} <= set(entry["types_or"])


# --------------------------------------------------------------------------------------------
# End to end: the CLI and a real `git commit`
# --------------------------------------------------------------------------------------------


def run_dcode(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "dcode", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_install_check_and_commit(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("DCODE_MODEL", str(tmp_path / "no-model"))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = run_dcode(repo, "hook", "install")
    assert done.returncode == 0, done.stderr
    assert HOOK_MARKER in (repo / ".git" / "hooks" / "pre-commit").read_text(encoding="utf-8")

    stage(repo, "calc.py", BROKEN)
    done = run_dcode(repo, "hook", "check", "--strict")
    assert done.returncode == 3 and done.stdout == ""
    assert "cannot load the model" in done.stderr

    # git runs the installed hook: without a model it warns and lets the commit through.
    done = subprocess.run(["git", "commit", "-q", "-m", "wip"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dcode hook: warning: skipped: cannot load the model" in done.stderr
    assert (repo / "calc.py").read_text(encoding="utf-8") == BROKEN


def test_a_replaced_hook_still_runs_after_dcodes_and_can_stop_the_commit(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("DCODE_MODEL", str(tmp_path / "no-model"))  # dcode warns and lets commits through
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    hook_file = repo / ".git" / "hooks" / "pre-commit"
    hook_file.write_text('#!/bin/sh\necho "lint ran" >&2\n[ ! -f block ] || exit 7\n', encoding="utf-8")
    hook_file.chmod(0o755)
    install_hook(repo, force=True)

    stage(repo, "calc.py", BROKEN)
    done = subprocess.run(["git", "commit", "-q", "-m", "one"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dcode hook: warning" in done.stderr and "lint ran" in done.stderr

    (repo / "block").write_text("", encoding="utf-8")
    stage(repo, "other.py", "x = 1\n")
    done = subprocess.run(["git", "commit", "-q", "-m", "two"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "lint ran" in done.stderr  # the old hook's verdict still counts
    assert git(repo, "log", "--format=%s").split() == ["one"]


def test_a_reviewed_fix_is_proposed_not_said_to_be_fixed_until_written(repo, emitting, monkeypatch, capsys):
    path = stage(repo, "calc.py", BROKEN)
    code, messages, _ = hook(Loader(emitting(REPAIR)), review=review_with(monkeypatch, "k\n"))
    assert code == 1 and path.read_text(encoding="utf-8") == BROKEN  # kept pending: nothing written
    assert "proposed fix for calc.py: syntax error at lines 4-5" in messages
    assert "fixed calc.py" not in messages
    code, messages, _ = hook(Loader(emitting(REPAIR)), review=review_with(monkeypatch, "a\n"))
    assert path.read_text(encoding="utf-8") == FIXED
    assert "applied to calc.py" in capsys.readouterr().err and "fixed calc.py" not in messages


def test_the_hook_runs_the_model_on_the_threads_setting(repo, emitting, monkeypatch):
    import torch
    from typer.testing import CliRunner

    from dcode.cli.app import app
    from dcode.model.paths import default_model_dir

    stage(repo, "calc.py", BROKEN)
    monkeypatch.setenv("DCODE_MODEL", str(default_model_dir()))
    monkeypatch.setenv("DCODE_THREADS", "1")
    model = emitting(REPAIR)
    monkeypatch.setattr("dcode.model.loader.load_model", lambda *args, **kwargs: model)  # the session's load, its model
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = CliRunner().invoke(app, ["hook", "check", "--no-server", "--attempts", "1", "--warn-only"])
        assert result.exit_code in (0, 1), result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
