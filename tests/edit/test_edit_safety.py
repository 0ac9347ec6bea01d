"""Safe writes, the undo journal, and configuration layering."""

from __future__ import annotations

import os
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


def test_a_read_only_file_is_refused_with_nothing_written(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(b"one\n")
    path.chmod(0o444)
    with pytest.raises(InputError, match=r"a\.py: read-only; not writing it"):
        Journal(tmp_path).apply("test", {path: (content_hash(b"one\n"), b"two\n")})
    assert path.read_bytes() == b"one\n" and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert Journal(tmp_path).entries() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another owner needs root")
def test_writes_and_undo_keep_mode_owner_and_group(tmp_path):
    path = tmp_path / "a.py"
    path.write_bytes(b"one\n")
    os.chown(path, 4321, 4322)
    path.chmod(0o640)
    journal = Journal(tmp_path)
    journal.apply("test", {path: (content_hash(b"one\n"), b"two\n")})
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, 0o640)
    os.chown(path, 0, 0)  # changed hands since dcode wrote it; the bytes are dcode's
    path.chmod(0o600)
    journal.undo()
    st = path.stat()
    assert path.read_bytes() == b"one\n"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, 0o640)


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
    with pytest.raises(InputError, match="seed must be a whole number"):
        load_settings(tmp_path, {}, env={})
    with pytest.raises(InputError, match="environment DCODE_CACHE: cache must be true or false, got 'maybe'"):
        load_settings(None, {}, env={"DCODE_CACHE": "maybe"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('cache = "no"', "cache must be true or false, got 'no'"),
        ('live = "yes"', "live must be true or false"),
        ("int8 = 1", "int8 must be true or false"),
        ("seed = 1.5", "seed must be a whole number of at least 0, got 1.5"),
        ("seed = -1", "seed must be a whole number of at least 0"),
        ("steps = -3", "steps must be a whole number of at least 1, got -3"),
        ("tokens_per_step = 0", "tokens_per_step must be a whole number of at least 1"),
        ("block_size = 0", "block_size must be a whole number of at least 1"),
        ("max_tokens = 0", "max_tokens must be a whole number of at least 1"),
        ("context_budget = true", "context_budget must be a whole number of at least 1"),
        ("threshold = 7", "threshold must be a number between 0 and 1, got 7"),
        ('threshold = "0.5"', "threshold must be a number between 0 and 1"),
        ("low_confidence = -0.1", "low_confidence must be a number between 0 and 1"),
        ("temperature = -1", "temperature must be a number of at least 0"),
        ("top_p = 5", "top_p must be a number above 0 and at most 1"),
        ("top_p = 0", "top_p must be a number above 0 and at most 1"),
        ("temperature = nan", "temperature must be a number of at least 0"),
        ('dtype = "float64"', "dtype must be auto, float32, bfloat16 or float16, got 'float64'"),
        ('device = "tpu"', "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ("model = 3", "model must be a model directory or name"),
    ],
)
def test_every_setting_is_checked_for_type_and_range(tmp_path, monkeypatch, line, message):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "cfg" / "dcode").mkdir(parents=True)
    (tmp_path / "cfg" / "dcode" / "config.toml").write_text(line + "\n")
    with pytest.raises(InputError) as err:
        load_settings(None, {}, env={})
    assert message in str(err.value) and "|" not in str(err.value)  # plain words, not Python types


def test_flags_and_environment_values_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "none"))
    with pytest.raises(InputError, match="^--steps must be a whole number of at least 1, got 0$"):
        load_settings(None, {"steps": 0}, env={})
    with pytest.raises(InputError, match="^environment DCODE_TOP_P: top_p must be a number above 0 and at most 1"):
        load_settings(None, {}, env={"DCODE_TOP_P": "1.5"})
    settings, _ = load_settings(None, {"dtype": "bf16"}, env={"DCODE_THRESHOLD": "none", "DCODE_SEED": "7",
                                                              "DCODE_TEMPERATURE": "1", "DCODE_LIVE": "off"})
    assert (settings.dtype, settings.threshold, settings.seed, settings.temperature, settings.live) == (
        "bf16", None, 7, 1.0, False)


def test_the_dtype_names_settings_accept_are_the_ones_the_loader_knows():
    from dcode.model.device import DTYPES
    from dcode.settings import DTYPE_NAMES

    assert set(DTYPE_NAMES) == {"auto", *DTYPES}
