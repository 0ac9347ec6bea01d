"""The Python sources dcode trains and evaluates on: packages found under source roots (the
standard library, site-packages, plain directories), their files filtered (binary, generated,
minified, vendored, oversized, duplicate), and the stable package-level train/validation split.
Training (`dcode.train.corpus`) and evaluation (`dcode.eval.tasks`) both draw from here, so a
held-out package is held out of both."""

from __future__ import annotations

import email.parser
import hashlib
import re
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dcode.errors import InputError
from dcode.sources.licenses import license_from_metadata, license_from_text

# --------------------------------------------------------------------------------------- packages


@dataclass
class Package:
    """A unit of the split: a stdlib top-level module or package, or an installed distribution."""

    name: str
    license: str | None
    root: Path  # paths inside the corpus are relative to this
    files: list[Path] = field(default_factory=list)
    source: str = ""


STDLIB_SKIP = {"site-packages", "dist-packages", "__pycache__", "lib2to3", "idlelib", "turtledemo", "config-3"}
VENDOR_DIRS = {"_vendor", "vendor", "vendored", "_vendored", "third_party", "thirdparty", "extern", "externals", "_distutils_vendor"}
MAX_FILE_BYTES = 512 * 1024


def default_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    roots = [Path(paths["stdlib"]), Path(paths["purelib"])]
    if paths.get("platlib") and Path(paths["platlib"]) != Path(paths["purelib"]):
        roots.append(Path(paths["platlib"]))
    return [r for r in roots if r.is_dir()]


def _is_stdlib_root(root: Path) -> bool:
    return (root / "os.py").is_file() and (root / "collections").is_dir()


def _py_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if p.is_file() and "__pycache__" not in p.parts)


def _stdlib_packages(root: Path) -> Iterator[Package]:
    for entry in sorted(root.iterdir()):
        if entry.name in STDLIB_SKIP or entry.name.startswith(("config-", ".")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            yield Package(f"stdlib/{entry.stem}", "PSF-2.0", root, [entry], "stdlib")
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            yield Package(f"stdlib/{entry.name}", "PSF-2.0", root, _py_files(entry), "stdlib")


def _dist_files(dist_info: Path, site: Path) -> list[Path]:
    """The .py files a distribution installed, from its RECORD (falls back to top_level.txt)."""
    record = dist_info / "RECORD"
    files: list[Path] = []
    if record.is_file():
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            rel = line.split(",", 1)[0]
            if rel.endswith(".py") and not rel.startswith(".."):
                path = site / rel
                if path.is_file():
                    files.append(path)
        return sorted(set(files))
    top = dist_info / "top_level.txt"
    if top.is_file():
        for name in top.read_text(encoding="utf-8").split():
            if (site / name).is_dir():
                files.extend(_py_files(site / name))
            elif (site / f"{name}.py").is_file():
                files.append(site / f"{name}.py")
    return sorted(set(files))


def _site_packages(root: Path) -> Iterator[Package]:
    for dist_info in sorted(root.glob("*.dist-info")):
        meta = dist_info / "METADATA"
        if not meta.is_file():
            continue
        text = meta.read_text(encoding="utf-8", errors="replace")
        msg = email.parser.Parser().parsestr(text, headersonly=True)
        name = str(msg.get("Name") or dist_info.name.split("-")[0]).lower().replace("_", "-")
        lic = license_from_metadata(text)
        if lic is None:
            # Newer wheels ship the license text in dist-info/licenses/; older ones in the dist-info.
            for lf in sorted(list(dist_info.glob("LICEN[CS]E*")) + list(dist_info.glob("licenses/*"))):
                if lf.is_file():
                    lic = license_from_text(lf.read_text(encoding="utf-8", errors="replace"))
                    break
        yield Package(name, lic, root, _dist_files(dist_info, root), "site-packages")


def _plain_packages(root: Path) -> Iterator[Package]:
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        lic = None
        for lf in sorted(entry.glob("*")):
            if lf.is_file() and lf.name.upper().startswith(("LICENSE", "LICENCE", "COPYING")):
                lic = license_from_text(lf.read_text(encoding="utf-8", errors="replace"))
                break
        yield Package(entry.name, lic, entry, _py_files(entry), str(root))


def discover_packages(roots: Sequence[Path] | None = None) -> list[Package]:
    """Every package under `roots` (default: this Python's stdlib and site-packages), once by name."""
    found: dict[str, Package] = {}
    for root in roots or default_roots():
        root = Path(root).expanduser()
        if not root.is_dir():
            raise InputError(f"{root}: corpus source directory not found")
        if _is_stdlib_root(root):
            packages = _stdlib_packages(root)
        elif any(root.glob("*.dist-info")):
            packages = _site_packages(root)
        else:
            packages = _plain_packages(root)
        for package in packages:
            found.setdefault(package.name, package)  # in two roots (a venv over the system): the first wins
    return list(found.values())


# ------------------------------------------------------------------------------------------ files

# Markers of generated code, looked for in the comment lines of a file's head (prose in a
# docstring, like ast.py's "a tree can be generated by passing ...", is not a marker), plus the
# conventional all-caps "DO NOT EDIT", "@generated" and "this file is (automatically) generated"
# anywhere in the head.
GENERATED_COMMENT = re.compile(r"^\s*#.*\b(generated by|auto-?generated|automatically generated|this file is generated|do not edit)", re.IGNORECASE)
GENERATED_ANYWHERE = re.compile(r"DO NOT EDIT|@generated|[Tt]his (file|module) (is|was) (auto(matically)?[- ]?)?generated")


def reject_reason(rel_path: str, data: bytes) -> str | None:
    """Why a source file is unfit for training, or None to keep it."""
    parts = set(Path(rel_path).parts[:-1])
    if parts & VENDOR_DIRS:
        return "vendored"
    if rel_path.endswith(("_pb2.py", "_pb2_grpc.py")):
        return "generated"
    if len(data) > MAX_FILE_BYTES:
        return "too large"
    if not data.strip():
        return "empty"
    if b"\x00" in data:
        return "binary"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not utf-8"
    lines = text.splitlines()
    head = lines[:10]
    if any(GENERATED_COMMENT.search(line) for line in head) or GENERATED_ANYWHERE.search("\n".join(head)):
        return "generated"
    if max(len(line) for line in lines) > 1000 or len(text) / len(lines) > 200:
        return "minified"
    return None


@dataclass
class SourceFile:
    package: str
    path: str  # relative to the package root, forward slashes: what `<|file|>` introduces
    text: str


def collect_files(
    packages: Sequence[Package], seen: set[str] | None = None, stats: dict[str, int] | None = None
) -> dict[str, list[SourceFile]]:
    """Kept files per package (filters applied, exact duplicates dropped across all packages)."""
    seen = set() if seen is None else seen
    stats = {} if stats is None else stats
    out: dict[str, list[SourceFile]] = {}
    for pkg in packages:
        kept: list[SourceFile] = []
        for path in pkg.files:
            rel = path.relative_to(pkg.root).as_posix()
            try:
                data = path.read_bytes()
            except OSError:
                stats["unreadable"] = stats.get("unreadable", 0) + 1
                continue
            reason = reject_reason(rel, data)
            if reason is None:
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:
                    reason = "duplicate"
                else:
                    seen.add(digest)
            if reason is not None:
                stats[reason] = stats.get(reason, 0) + 1
                continue
            kept.append(SourceFile(pkg.name, rel, data.decode("utf-8")))
        out[pkg.name] = kept
    return out


def cap_files(files: list[SourceFile], max_bytes: int | None) -> list[SourceFile]:
    """The files (in path order) that fit in `max_bytes`; always at least the first one."""
    if max_bytes is None:
        return files
    out: list[SourceFile] = []
    total = 0
    for f in sorted(files, key=lambda f: f.path):
        size = len(f.text.encode())
        if out and total + size > max_bytes:
            continue
        out.append(f)
        total += size
    return out


# ------------------------------------------------------------------------------------------ split


def is_validation(package: str, val_fraction: float, salt: str = "dcode-split-v1") -> bool:
    """Stable, machine-independent package-level split."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{package}".encode()).digest()[:8], "big")
    return (h % 10_000) < val_fraction * 10_000
