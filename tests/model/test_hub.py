"""`dcode pull OWNER/REPO[@REV]` and `dcode models`, against a Hub served from 127.0.0.1.

The server speaks the part of the Hub's protocol huggingface_hub uses: `/api/models/{repo}/revision/{rev}`
(metadata with file sizes and LFS sha256s) and `/{repo}/resolve/{rev}/{file}` (HEAD with X-Repo-Commit,
ETag and Content-Length; GET with Range). It serves the shared tiny Dream fixture plus a pickle and a
Python file that a pull must never fetch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcode.cli.app import app
from dcode.errors import InputError, ModelError
from dcode.model import hub
from dcode.model.loader import load_model, resolve_model_dir
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "dream-tiny"
REPO = "test-org/dream-tiny"
SHA = "0123456789abcdef0123456789abcdef01234567"
SHARD = "model.safetensors"


class FakeHub:
    """Files of one repository at one commit, and a log of the requests that fetched them."""

    def __init__(self) -> None:
        self.files = {name: (FIXTURE / name).read_bytes() for name in ("config.json", "generation_config.json", SHARD)}
        self.files["pytorch_model.bin"] = b"pickle"  # must never be fetched
        self.files["modeling_dream.py"] = b"print('remote code')"  # nor this
        self.lfs = {SHARD, "pytorch_model.bin"}
        self.metadata_sha = {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}
        self.cut_shard_at: int | None = None  # serve only this many bytes of the shard, then fail
        self.corrupt_shard = False
        self.gets: list[tuple[str, str | None]] = []  # (file, Range header)
        self.revisions: set[str] = set()  # the revisions files were asked at

    def body(self, name: str) -> bytes:
        data = self.files[name]
        if name == SHARD and self.corrupt_shard:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        return data

    def metadata(self) -> dict:
        siblings = []
        for name, data in self.files.items():
            entry = {"rfilename": name, "size": len(data)}
            if name in self.lfs:
                entry["lfs"] = {"size": len(data), "sha256": self.metadata_sha[name], "pointerSize": 134}
            siblings.append(entry)
        return {"id": REPO, "sha": SHA, "siblings": siblings}


def _handler(fake: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def _file(self) -> str | None:
            prefix = f"/{REPO}/resolve/"
            if not self.path.startswith(prefix):
                return None
            revision, _, name = self.path[len(prefix):].partition("/")
            fake.revisions.add(revision)
            return name if name in fake.files else None

        def do_HEAD(self) -> None:
            name = self._file()
            if name is None:
                self.send_error(404)
                return
            data = fake.body(name)
            self.send_response(200)
            self.send_header("X-Repo-Commit", SHA)
            self.send_header("ETag", f'"{fake.metadata_sha[name]}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()

        def do_GET(self) -> None:
            if self.path.startswith(f"/api/models/{REPO}/revision/"):
                body = json.dumps(fake.metadata()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            name = self._file()
            if name is None:
                self.send_error(404)
                return
            requested = self.headers.get("Range")
            fake.gets.append((name, requested))
            data = fake.body(name)
            start = int(requested.removeprefix("bytes=").split("-")[0]) if requested else 0
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("X-Repo-Commit", SHA)
            self.send_header("ETag", f'"{fake.metadata_sha[name]}"')
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            end = fake.cut_shard_at if name == SHARD and fake.cut_shard_at is not None else len(data)
            self.wfile.write(data[start:end])
            self.close_connection = True

    return Handler


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("DCODE_MODEL", raising=False)
    yield fake
    server.shutdown()
    server.server_close()


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# --- names ---------------------------------------------------------------------------------------


def test_short_names_and_repositories_parse() -> None:
    assert hub.parse_target("llada") == hub.PullTarget("llada", "GSAI-ML/LLaDA-8B-Instruct", "main")
    assert hub.parse_target("dream-coder@abc123").revision == "abc123"
    assert hub.parse_target("apple/DiffuCoder-7B-cpGRPO").name == "DiffuCoder-7B-cpGRPO"
    for bad in ("nonsense", "a/b/c", "../x"):
        with pytest.raises(InputError):
            hub.parse_target(bad)


def test_unpulled_short_name_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCODE_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=r"^llada is not pulled yet: run `dcode pull llada`"):
        resolve_model_dir("llada")


# --- pull ----------------------------------------------------------------------------------------


def test_pull_fetches_only_what_dcode_loads_and_records_the_commit(fake_hub: FakeHub) -> None:
    result = cli("pull", REPO)
    assert result.exit_code == 0, result.output
    directory = Path(result.stdout.strip())
    assert directory == hub.models_dir() / "dream-tiny"
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == [
        "config.json", "dcode-pull.json", "generation_config.json", SHARD]
    assert {name for name, _ in fake_hub.gets} == {"config.json", "generation_config.json", SHARD}
    record = json.loads((directory / "dcode-pull.json").read_text())
    assert record["repo"] == REPO and record["revision"] == "main" and record["sha"] == SHA
    assert (directory / SHARD).read_bytes() == fake_hub.files[SHARD]
    assert fake_hub.revisions == {SHA}  # files come from the resolved commit, not from "main"
    # The name now works wherever --model does.
    assert resolve_model_dir("dream-tiny") == directory
    info = cli("--model", "dream-tiny", "info", "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["path"] == str(directory.resolve())
    # A second pull of the same commit downloads nothing.
    fake_hub.gets.clear()
    assert cli("pull", REPO).exit_code == 0
    assert fake_hub.gets == []


def test_interrupted_pull_resumes_with_a_range_request(fake_hub: FakeHub) -> None:
    fake_hub.cut_shard_at = len(fake_hub.files[SHARD]) // 2  # the connection drops halfway
    result = cli("pull", REPO)
    assert result.exit_code == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("dcode: error:")]
    assert len(errors) == 1 and "run `dcode pull` again to resume" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    directory = hub.models_dir() / "dream-tiny"
    assert not (directory / "dcode-pull.json").exists()  # not done
    kept = (directory / f"{SHARD}.part").stat().st_size
    assert 0 < kept <= fake_hub.cut_shard_at
    fake_hub.cut_shard_at = None
    fake_hub.gets.clear()
    assert hub.pull(REPO) == directory
    shard_gets = [rng for name, rng in fake_hub.gets if name == SHARD]
    assert shard_gets == [f"bytes={kept}-"]  # only the missing part was asked for
    assert (directory / SHARD).read_bytes() == fake_hub.files[SHARD]
    assert (directory / "dcode-pull.json").is_file() and not (directory / f"{SHARD}.part").exists()


def test_corrupt_shard_is_refused_in_one_line(fake_hub: FakeHub) -> None:
    fake_hub.corrupt_shard = True
    result = cli("pull", REPO)
    assert result.exit_code == 3
    errors = [line for line in result.stderr.splitlines() if line.startswith("dcode: error:")]
    assert len(errors) == 1 and "corrupt" in errors[0] and SHARD in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    directory = hub.models_dir() / "dream-tiny"
    assert not (directory / SHARD).exists() and not (directory / "dcode-pull.json").exists()


def test_offline_is_one_line(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("pull", REPO)
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [
        f"dcode: error: offline (HF_HUB_OFFLINE is set): cannot fetch {REPO}@main into {hub.models_dir() / 'dream-tiny'}"]


def test_unreachable_hub_is_one_line(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = cli("pull", "llada")
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcode: error: cannot fetch GSAI-ML/LLaDA-8B-Instruct@main")


def test_a_model_too_big_for_this_machine_is_said_before_the_download(
        fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "available_memory", lambda: (200_000, "free on cuda:0"))
    result = cli("pull", REPO)
    assert result.exit_code == 0
    warning = result.stderr.splitlines()[0]
    assert warning.startswith("warning: dream-tiny") and "bf16" in warning and "--int8" in warning


def test_no_disk_space_is_refused_before_the_download(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    result = cli("pull", REPO)
    assert result.exit_code == 3 and "not enough free space" in result.stderr
    assert fake_hub.gets == []


# --- models --------------------------------------------------------------------------------------


def test_models_lists_and_removes_pulled_ones(fake_hub: FakeHub) -> None:
    assert cli("pull", REPO).exit_code == 0
    rows = {r["name"]: r for r in json.loads(cli("models", "--json").stdout)}
    assert rows["dcode-mini"]["kind"] == "shipped" and rows["dcode-mini"]["default"]
    pulled = rows["dream-tiny"]
    assert pulled["kind"] == "pulled" and pulled["family"] == "dream" and pulled["parameters"] > 0
    assert pulled["bytes"] >= len(fake_hub.files[SHARD])
    assert "dream-tiny" in cli("models").stdout
    refused = cli("models", "rm", "dcode-mini")
    assert refused.exit_code == 2 and "shipped" in refused.stderr
    assert cli("models", "rm", "dream-tiny").exit_code == 0
    assert not (hub.models_dir() / "dream-tiny").exists()
    assert cli("models", "rm", "dream-tiny").exit_code == 2


# --- Open-dCoder: Dream's layout under Qwen2's name ----------------------------------------------


def _qwen2_copy(tmp_path: Path, **changes) -> Path:
    """The Dream fixture relabelled as Open-dCoder labels itself (model_type qwen2, no remote code)."""
    directory = tmp_path / "open-dcoder-tiny"
    directory.mkdir()
    for name in ("model.safetensors", "generation_config.json"):
        (directory / name).write_bytes((FIXTURE / name).read_bytes())
    config = json.loads((FIXTURE / "config.json").read_text())
    config.pop("auto_map")
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"], **changes)
    config = {k: v for k, v in config.items() if v is not None}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_open_dcoder_format_loads_natively_as_dream(tmp_path: Path) -> None:
    import torch

    qwen2 = load_model(_qwen2_copy(tmp_path), device="cpu", dtype="float32")
    dream = load_model(FIXTURE, device="cpu", dtype="float32")
    assert qwen2.family == "dream" and qwen2.config.logit_shift == 1
    ids = [[3, 17, 511, 511, 42, 9]]
    assert torch.equal(qwen2.logits(ids), dream.logits(ids))


def test_a_plain_qwen2_without_a_mask_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="mask_token_id"):
        load_model(_qwen2_copy(tmp_path, mask_token_id=None), device="cpu")
