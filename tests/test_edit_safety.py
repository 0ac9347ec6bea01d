"""Safe writes, the undo journal, and configuration layering."""

from __future__ import annotations

import stat

import pytest

from dcode.edit.files import atomic_write, content_hash, newline_style
from dcode.edit.journal import Journal, state_dir
from dcode.errors import InputError
from dcode.settings import load_settings


def test_atomic_write_keeps_mode_and_leaves_no_temp(tmp_path):
    path = tmp_path / "run.sh"
    path.write_bytes(b"echo old\n")
    path.chmod(0o755)
    atomic_write(path, b"echo new\n")
    assert path.read_bytes() == b"echo new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["run.sh"]


def test_newline_style():
    assert newline_style("a\r\nb\r\n") == "\r\n"
    assert newline_style("a\nb\n") == "\n"
    assert newline_style("") == "\n"


def test_journal_apply_and_undo_several_steps(tmp_path):
    (tmp_path / ".git").mkdir()
    path = tmp_path / "a.py"
    versions = [b"v0\r\n", b"v1\n", "v2 \u00e9\n".encode()]
    path.write_bytes(versions[0])
    journal = Journal(tmp_path)
    for old, new in zip(versions, versions[1:]):
        journal.apply("test", {path: (content_hash(old), new)})
    assert path.read_bytes() == versions[2]
    assert journal.dir == tmp_path / ".git" / "dcode" / "journal"
    journal.undo()
    assert path.read_bytes() == versions[1]
    journal.undo()
    assert path.read_bytes() == versions[0]  # byte-exact, CRLF included
    with pytest.raises(InputError, match="nothing to undo"):
        journal.undo()


def test_apply_refuses_a_file_changed_since_read(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(b"original\n")
    read_hash = content_hash(b"original\n")
    path.write_bytes(b"edited by the user\n")
    with pytest.raises(InputError, match="changed since dcode read it"):
        Journal(tmp_path).apply("test", {path: (read_hash, b"dcode's version\n")})
    assert path.read_bytes() == b"edited by the user\n"
    assert Journal(tmp_path).entries() == []


def test_undo_refuses_to_clobber_later_edits(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(b"one\n")
    journal = Journal(tmp_path)
    journal.apply("test", {path: (content_hash(b"one\n"), b"two\n")})
    path.write_bytes(b"three\n")
    with pytest.raises(InputError, match="edited since"):
        journal.undo()
    assert path.read_bytes() == b"three\n"
    journal.undo(force=True)
    assert path.read_bytes() == b"one\n"


def test_state_dir_outside_git_uses_xdg_state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    project = tmp_path / "proj"
    project.mkdir()
    assert state_dir(project).parent == tmp_path / "state" / "dcode"


def test_settings_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "cfg" / "dcode").mkdir(parents=True)
    (tmp_path / "cfg" / "dcode" / "config.toml").write_text('threshold = 0.5\nseed = 1\nmodel = "/models/mine"\n')
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "pyproject.toml").write_text('[tool.dcode]\nseed = 2\nmax-tokens = 99\n')
    settings, warnings = load_settings(tmp_path / "repo", {"max_tokens": 50}, env={"DCODE_SEED": "3"})
    assert settings.threshold == 0.5  # user file
    assert settings.seed == 3  # environment over project over user
    assert settings.max_tokens == 50  # flag over project
    assert settings.model == "/models/mine" and warnings == []


def test_project_cannot_pick_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    (tmp_path / ".dcode.toml").write_text('model = "/evil/model"\ndevice = "cuda"\nthreshold = 0.7\n')
    settings, warnings = load_settings(tmp_path, {}, env={})
    assert settings.model is None and settings.device == "auto" and settings.threshold == 0.7
    assert len(warnings) == 2 and "cannot choose the model" in warnings[0]


def test_unknown_and_mistyped_settings_are_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    (tmp_path / ".dcode.toml").write_text("thresold = 0.7\n")
    with pytest.raises(InputError, match="unknown setting 'thresold'"):
        load_settings(tmp_path, {}, env={})
    (tmp_path / ".dcode.toml").write_text('seed = "abc"\n')
    with pytest.raises(InputError, match="seed must be int"):
        load_settings(tmp_path, {}, env={})
    with pytest.raises(InputError, match="DCODE_CACHE_DIR"):
        load_settings(None, {}, env={"DCODE_CACHE_DIR": "maybe"})
