"""Checkpoints from the Hugging Face Hub: `dcode pull NAME_OR_REPO[@REVISION]`, `dcode models`.

A pull resolves the revision to a commit sha, fetches only what dcode loads (config, tokenizer
files, safetensors shards and their index: never pickles or Python files) into
`<cache>/models/<name>/`, checks every shard's size and sha256 against the Hub's metadata, reads
the result as `dcode info --model` does, and only then writes `dcode-pull.json`: a directory
without it is an unfinished pull, which the next `dcode pull` resumes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcode.errors import InputError, ModelError
from dcode.model.console import stderr_console
from dcode.model.paths import (
    KNOWN, PULL_NAME, PULL_RECORD, default_model_name, models_dir, shipped_model, shipped_weights_root,
)

# Seconds to wait for the Hub before saying it cannot be reached (a pull must never hang).
TIMEOUT = 10
# What dcode reads from a checkpoint; everything else (pickles, remote code, READMEs) stays there.
ALLOW = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
         "*.safetensors", "model.safetensors.index.json")
DENY = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.py")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")

console = stderr_console()


@dataclass(frozen=True)
class PullTarget:
    """What a `NAME_OR_REPO[@REVISION]` argument asks for, and where it goes."""

    name: str
    repo: str
    revision: str

    @property
    def directory(self) -> Path:
        return models_dir() / self.name


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None  # the LFS sha256 (shards); None for small git files


def parse_target(spec: str) -> PullTarget:
    """`dream-coder`, `dream-coder@<sha>` or `owner/repo[@rev]`; a repo's name is its last part."""
    ref, _, revision = spec.partition("@")
    if ref in KNOWN:
        return PullTarget(ref, KNOWN[ref].repo, revision or "main")
    if _REPO.fullmatch(ref) and ".." not in ref:
        return PullTarget(ref.split("/")[1], ref, revision or "main")
    known = ", ".join(KNOWN)
    raise InputError(f"{spec}: not a model dcode knows ({known}) nor a Hub repository OWNER/NAME")


def names_hub_model(spec: str) -> bool:
    """Whether `dcode pull spec` means the Hub: not a directory here, nor a shipped model's name."""
    return not Path(spec).expanduser().is_dir() and shipped_model(spec) is None


def pull(spec: str) -> Path:
    """Download, verify and record the checkpoint `spec` names; returns its directory."""
    target = parse_target(spec)
    if _offline():
        record = _read_record(target.directory)
        if record:
            console.print(f"{target.name}: pulled ({target.repo}@{str(record.get('sha'))[:12]}); offline, "
                          "not checked for a newer revision", markup=False)
            return target.directory
        raise ModelError(f"offline (HF_HUB_OFFLINE is set): cannot fetch {target.repo}@{target.revision} "
                         f"into {target.directory}")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=_endpoint())
    info = _hub_call(target, lambda: api.model_info(target.repo, revision=target.revision, files_metadata=True,
                                                    timeout=TIMEOUT))
    sha = info.sha
    if not sha:
        raise ModelError(f"{target.repo}@{target.revision}: the Hub gave no commit sha for this revision")
    record = _read_record(target.directory)
    if record and record.get("repo") != target.repo:
        raise InputError(f"{target.directory} holds {record.get('repo')}, not {target.repo}: "
                         f"`dcode models rm {target.name}` first")
    if record and record.get("sha") == sha:
        console.print(f"{target.name}: already pulled ({target.repo}@{sha[:12]})", markup=False)
        return target.directory
    files = _select(target, info.siblings or [])
    _warn_if_too_big(target, _parameter_count(info, files))
    target.directory.mkdir(parents=True, exist_ok=True)
    (target.directory / PULL_RECORD).unlink(missing_ok=True)  # unfinished until verified again
    _drop_changed(target.directory, record, files)
    _check_free_space(target.directory, sum(_still_needed(target.directory, f) for f in files))
    started = time.perf_counter()
    for f in files:
        _download(target, sha, f)
    _verify(target.directory, files)
    _check_loads(target.directory)
    _write_record(target, sha, files)
    console.print(f"{target.name}: {target.repo}@{sha[:12]} verified and in place "
                  f"({time.perf_counter() - started:.1f} s)", markup=False)
    return target.directory


def run_hub_pull(spec: str) -> None:
    """`dcode pull NAME_OR_REPO[@REV]`: the model's directory goes to stdout."""
    sys.stdout.write(f"{pull(spec)}\n")


def _endpoint() -> str | None:
    # Read now, not at huggingface_hub's import: HF_ENDPOINT may be set after it was imported.
    return os.environ.get("HF_ENDPOINT") or None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_call(target: PullTarget, call):
    """Run one Hub request; any failure (no network, unknown repo or revision) is one line."""
    try:
        return call()
    except Exception as err:  # httpx, huggingface_hub and OS errors alike: the user needs one line
        raise ModelError(f"cannot fetch {target.repo}@{target.revision} from the Hub: {_one_line(err)}") from None


def _select(target: PullTarget, siblings: list) -> list[RemoteFile]:
    """The files dcode loads, with sizes; refuses a repository without config or safetensors."""
    files = []
    for s in siblings:
        name = s.rfilename
        if "/" in name or any(fnmatch.fnmatch(name, p) for p in DENY):
            continue
        if any(fnmatch.fnmatch(name, p) for p in ALLOW):
            files.append(RemoteFile(name, int(s.size or 0), s.lfs.sha256 if s.lfs else None))
    names = {f.name for f in files}
    if "config.json" not in names:
        raise ModelError(f"{target.repo}: no config.json at the top of the repository")
    if not any(n.endswith(".safetensors") for n in names):
        raise ModelError(f"{target.repo}: no safetensors weights (dcode never loads pickled .bin checkpoints)")
    return sorted(files, key=lambda f: f.name)


def _parameter_count(info: Any, files: list[RemoteFile]) -> int:
    """The Hub's safetensors parameter count, else the shards' bytes at 2 bytes per parameter."""
    if getattr(info, "safetensors", None) and info.safetensors.total:
        return int(info.safetensors.total)
    return sum(f.size for f in files if f.name.endswith(".safetensors")) // 2


def available_memory() -> tuple[int, str]:
    """(bytes, where): free memory on the first CUDA device, else MemAvailable from /proc/meminfo."""
    try:
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info(0)
            return free, "free on cuda:0"
    except Exception:  # a broken CUDA setup is not a reason to refuse a download
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "of available memory"
    except (OSError, ValueError, IndexError):
        pass
    return 0, ""


def _warn_if_too_big(target: PullTarget, parameters: int) -> None:
    """Say before the download when this machine cannot run the model (bf16, else int8)."""
    have, where = available_memory()
    if not have or not parameters:
        return
    # Weights plus about a fifth for activations, logits and the runtime.
    bf16, int8 = parameters * 2 * 6 // 5, parameters * 6 // 5
    if bf16 <= have:
        return
    on_gpu = where.endswith("cuda:0")  # --int8 is a GPU option
    hint = "; it fits with --int8" if on_gpu and int8 <= have else "; too big for this machine even with --int8" if on_gpu else ""
    console.print(f"warning: {target.name} ({parameters / 1e9:.1f}B parameters) needs about {bf16 / 1e9:.1f} GB "
                  f"in bf16, this machine has {have / 1e9:.1f} GB {where}{hint}", markup=False)


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ModelError(f"not enough free space in {directory}: need {needed / 1e9:.2f} GB, have "
                         f"{free / 1e9:.2f} GB (set DCODE_CACHE_DIR to put models elsewhere)")


def _still_needed(directory: Path, f: RemoteFile) -> int:
    """Bytes left to download for `f`: none when complete, less what a `.part` file holds."""
    if _complete(directory, f):
        return 0
    part = directory / f"{f.name}.part"
    return f.size - (part.stat().st_size if part.is_file() else 0)


def _complete(directory: Path, f: RemoteFile) -> bool:
    """A shard already here at its full size (its sha256 is checked after the download). Small git
    files have no sha256 in the metadata: they are fetched again, which costs nothing."""
    path = directory / f.name
    return f.sha256 is not None and path.is_file() and path.stat().st_size == f.size


def _drop_changed(directory: Path, record: dict | None, files: list[RemoteFile]) -> None:
    """Shards of an earlier pull that this commit changed: removed, so they are fetched again."""
    old = (record or {}).get("files") or {}
    for f in files:
        entry = old.get(f.name)
        if isinstance(entry, dict) and (entry.get("size"), entry.get("sha256")) != (f.size, f.sha256):
            (directory / f.name).unlink(missing_ok=True)
            (directory / f"{f.name}.part").unlink(missing_ok=True)


def _download(target: PullTarget, sha: str, f: RemoteFile) -> None:
    """One file at the pinned commit into `<file>.part`, renamed into place when whole.

    huggingface_hub (2.x) resumes only within one call; a `.part` file kept across runs lets an
    interrupted 5 GB shard continue with an HTTP Range request where it stopped.
    """
    dest = target.directory / f.name
    if _complete(target.directory, f):
        return
    part = dest.with_name(dest.name + ".part")
    # Only a shard resumes: its sha256 is checked at the end, which a small git file lacks.
    start = part.stat().st_size if f.sha256 and part.is_file() else 0
    if start > f.size:
        start = 0
    if not console.is_terminal:
        console.print(f"downloading {f.name} ({_size(f.size - start)})", markup=False)
    try:
        _fetch(target, sha, f, part, start)
    except ModelError:
        raise
    except Exception as err:  # a dropped connection, a timeout: the .part file is kept for the next pull
        got = part.stat().st_size if part.is_file() else 0
        raise ModelError(f"download of {target.repo} {f.name} stopped at {got} of {f.size} bytes "
                         f"({_one_line(err)}): run `dcode pull` again to resume") from None
    os.replace(part, dest)


def _fetch(target: PullTarget, sha: str, f: RemoteFile, part: Path, start: int) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    url = hf_hub_url(target.repo, f.name, revision=sha, endpoint=_endpoint())
    headers = build_hf_headers()  # the user's token, for gated repositories
    if start:
        headers["Range"] = f"bytes={start}-"
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    with get_session().stream("GET", url, headers=headers, follow_redirects=True, timeout=TIMEOUT) as response:
        if response.status_code not in (200, 206):
            raise ModelError(f"cannot fetch {target.repo}@{sha[:12]} {f.name}: HTTP {response.status_code}")
        if response.status_code == 200:
            start = 0  # the server ignored the Range: start over
        with progress, open(part, "ab" if start else "wb") as out:
            task = progress.add_task(f.name, total=f.size, completed=start)
            for chunk in response.iter_bytes():
                out.write(chunk)
                progress.advance(task, len(chunk))


def _verify(directory: Path, files: list[RemoteFile]) -> None:
    """Sizes, and the sha256 of every LFS file; a bad file is removed so the next pull refetches it."""
    for f in files:
        path = directory / f.name
        problem = _file_problem(path, f)
        if problem:
            path.unlink(missing_ok=True)
            raise ModelError(f"{path}: {problem}; removed it, run `dcode pull` again")


def _file_problem(path: Path, f: RemoteFile) -> str | None:
    size = path.stat().st_size
    if f.size and size != f.size:
        return f"has {size} bytes, the Hub says {f.size}"
    if f.sha256:
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != f.sha256:
            return f"corrupt (sha256 {digest.hexdigest()}, the Hub says {f.sha256})"
    return None


def _check_loads(directory: Path) -> None:
    """What `dcode info --model DIR` reads must make sense, and every tensor the loader will ask
    for must be in the shards' headers with the shape config.json implies (no weight is read)."""
    from dcode.model import foreign
    from dcode.model.info import describe

    describe(str(directory), "cpu", None)
    source = str(directory / "config.json")
    raw = foreign.read_json(directory / "config.json") or {}
    if "model_type" in raw:
        family = foreign.detect_family(raw, source)
        cfg = foreign.foreign_config(raw, family, foreign.special_ids(directory, raw), source)
        foreign._check_headers(foreign.tensor_plan(cfg), foreign.shard_map(directory), directory, cfg)


def _write_record(target: PullTarget, sha: str, files: list[RemoteFile]) -> None:
    record = {"name": target.name, "repo": target.repo, "revision": target.revision, "sha": sha,
              "license": KNOWN[target.name].license if target.name in KNOWN else None,
              "files": {f.name: {"size": f.size, "sha256": f.sha256} for f in files},
              "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = target.directory / f".{PULL_RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target.directory / PULL_RECORD)


def _read_record(directory: Path) -> dict | None:
    try:
        record = json.loads((directory / PULL_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- dcode models ------------------------------------------------------------------------------


def installed_models() -> list[dict]:
    """Shipped and pulled models: name, kind, family, parameters, bytes on disk, path, default."""

    default = os.environ.get("DCODE_MODEL") or default_model_name()
    rows = []
    root = shipped_weights_root()
    # dcode-small's directory may hold only its base manifest until its adapter ships.
    shipped = sorted(p for p in root.iterdir() if (p / "config.json").is_file() or (p / "base.json").is_file()) if root else []
    for path in shipped:
        rows.append(_row(path, "shipped", default))
    if models_dir().is_dir():
        for path in sorted(models_dir().iterdir()):
            if path.is_dir() and not path.name.startswith("."):
                rows.append(_row(path, "pulled" if (path / PULL_RECORD).is_file() else "incomplete", default))
    return rows


def _row(path: Path, kind: str, default: str) -> dict:
    row: dict[str, Any] = {"name": path.name, "kind": kind, "family": None, "parameters": None,
                           "bytes": _disk_bytes(path), "path": str(path), "default": default in (path.name, str(path))}
    if kind == "incomplete":
        row["note"] = f"unfinished pull: run `dcode pull` again or `dcode models rm {path.name}`"
        return row
    try:
        from dcode.model.info import describe

        facts = describe(str(path), "cpu", None)
        row["family"], row["parameters"] = facts.get("family"), facts.get("parameters")
    except Exception as err:  # one unreadable model must not hide the others
        row["note"] = _one_line(err)
    base = _base_note(path)
    if base:
        row["note"] = base
    return row


def _base_note(path: Path) -> str | None:
    """For a model with a base.json: whether its base is pulled."""
    from dcode.model.base import BaseManifest, base_path

    try:
        manifest = BaseManifest.load(path)
    except ModelError as err:
        return str(err)
    if manifest is None:
        return None
    return "base pulled" if base_path(manifest).is_file() else f"base not pulled: run `dcode pull {path.name}`"


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def remove_model(name: str) -> Path:
    """Delete a pulled (or unfinished) model; shipped ones are refused."""

    root = shipped_weights_root()
    directory = models_dir() / name
    if not PULL_NAME.fullmatch(name) or not directory.is_dir():
        if root is not None and (root / name).is_dir():
            raise InputError(f"{name} is shipped with dcode, not pulled: it cannot be removed")
        raise InputError(f"{name}: no pulled model by that name (see `dcode models`)")
    shutil.rmtree(directory)
    return directory


def print_models(json_out: bool) -> None:
    """`dcode models`: a table for people, or JSON."""
    rows = installed_models()
    if json_out:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = [["", "name", "kind", "family", "parameters", "size", "path", "note"]]
    for r in rows:
        params = f"{r['parameters'] / 1e9:.2f}B" if (r["parameters"] or 0) >= 1e9 else (
            f"{r['parameters'] / 1e6:.1f}M" if r["parameters"] else "?")
        table.append(["*" if r["default"] else "", r["name"], r["kind"], r["family"] or "?", params,
                      _size(r["bytes"]), r["path"], r.get("note", "")])
    sys.stdout.write("".join(line + "\n" for line in _aligned(table)))


def _aligned(table: list[list[str]]) -> list[str]:
    """Rows as lines, every cell but the last padded to its column's widest: a name or a figure
    is never broken (a table fitted to 80 columns printed `dcode-smal` / `l`); a line wider than
    the terminal is folded by the terminal at its end, in the path or the note."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + row[len(widths):]).rstrip()
            for row in table]


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 2**20:.1f} MiB"
