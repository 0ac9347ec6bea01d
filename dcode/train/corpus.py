"""Training corpus: collect permissively licensed Python sources, split by package, tokenize.

Pipeline (`build_corpus`):
  1. `discover_packages` finds packages under the source roots. The default roots are the running
     Python's standard library (one package per top-level module, license PSF) and its
     site-packages (one package per installed distribution, license read from its METADATA).
     Any other directory is scanned the same way when it holds `*.dist-info` folders; otherwise
     each sub-directory is a package whose license comes from its LICENSE/COPYING file.
  2. Packages whose license is not permissive (or cannot be determined) are skipped and recorded.
  3. Files are filtered (binary, non-UTF-8, generated, minified, vendored, oversized) and exact
     duplicates are dropped by SHA-256 of their content (the first package in sorted order keeps it).
  4. Whole packages are held out for validation by a stable hash of their name, so no file of a
     validation package is ever trained on.
  5. Files are packed per package: `<|file|>path\\n` + contents for each file, a few files per
     document, each document closed by `<|endoftext|>` -- the same layout the inference engine
     builds from context files followed by the edited file. Documents are tokenized in parallel
     worker processes into flat uint16 (uint32 for vocabularies >= 65536) shards, with an index.

Output directory layout:
  tokenizer.json               trained on a sample of the training split's lines
  manifest.json                every package seen: license, split, files kept, or why skipped
  index.json                   shards per split, token dtype, token counts
  {split}_{n:05d}.bin          flat token ids
  {split}_{n:05d}.starts.npy   token offsets where each file (its `<|file|>` header) starts
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import random
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dcode.errors import InputError
from dcode.model.tokenizer import Tokenizer, train_tokenizer

# --------------------------------------------------------------------------------------- licenses

# Substrings (lower-case) of license names/expressions/classifiers -> canonical permissive name.
PERMISSIVE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("apache", "Apache-2.0"),
    ("mit-0", "MIT-0"),
    ("mit", "MIT"),
    ("expat", "MIT"),
    ("bsd", "BSD"),
    ("python software foundation", "PSF-2.0"),
    ("psf", "PSF-2.0"),
    ("isc", "ISC"),
    ("zlib", "Zlib"),
    ("unlicense", "Unlicense"),
    ("public domain", "Public-Domain"),
    ("cc0", "CC0-1.0"),
    ("0bsd", "0BSD"),
    ("hpnd", "HPND"),
    ("historical permission notice", "HPND"),
    ("zope public license", "ZPL-2.1"),
    ("upl", "UPL-1.0"),
)
# Copyleft or otherwise restrictive licenses: a package carrying one only is not used.
RESTRICTIVE_PATTERNS: tuple[str, ...] = ("gpl", "gnu", "mpl", "mozilla", "eupl", "cddl", "epl", "sspl", "proprietary", "commercial")


def _canonical_permissive(text: str) -> str | None:
    low = text.lower()
    for pattern, name in PERMISSIVE_PATTERNS:
        if re.search(rf"(?<![a-z]){re.escape(pattern)}", low):
            return name
    return None


def _is_restrictive(text: str) -> bool:
    low = text.lower()
    return any(re.search(rf"(?<![a-z]){p}", low) for p in RESTRICTIVE_PATTERNS)


def classify_license(candidates: Sequence[str]) -> str | None:
    """The permissive license these metadata strings declare, or None.

    `candidates` are License-Expression, the first line of License, and the license classifiers.
    An SPDX expression with OR is accepted when one alternative is permissive (we may choose it);
    otherwise any restrictive license (GPL, MPL, ...) anywhere disqualifies the package.
    """
    for text in candidates:
        if " or " in text.lower():
            for alternative in re.split(r"\s+or\s+", text, flags=re.IGNORECASE):
                name = _canonical_permissive(alternative.strip("() "))
                if name and not _is_restrictive(alternative):
                    return name
    if any(_is_restrictive(text) for text in candidates):
        return None
    for text in candidates:
        name = _canonical_permissive(text)
        if name:
            return name
    return None


def license_from_metadata(metadata_text: str) -> str | None:
    msg = email.parser.Parser().parsestr(metadata_text, headersonly=True)
    candidates: list[str] = []
    if msg.get("License-Expression"):
        candidates.append(str(msg["License-Expression"]))
    license_field = str(msg.get("License") or "").strip()
    if license_field and license_field.upper() != "UNKNOWN":
        # Some packages paste the whole license text here; its first line names it.
        candidates.append(license_field.splitlines()[0][:200])
    for classifier in msg.get_all("Classifier") or []:
        if classifier.startswith("License ::") and classifier.strip() != "License :: OSI Approved":
            candidates.append(classifier.split("::", 1)[1])
    return classify_license(candidates)


def license_from_text(text: str) -> str | None:
    """License of a LICENSE/COPYING file, judged by its opening lines."""
    head = "\n".join(text.splitlines()[:30])
    if "permission is hereby granted, free of charge" in head.lower():
        return "MIT"
    if "redistribution and use in source and binary forms" in head.lower():
        return "BSD"
    return classify_license([head])


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


# --------------------------------------------------------------------------------------- packing


def documents(files: Sequence[SourceFile], files_per_doc: int) -> list[list[SourceFile]]:
    """Group one package's files (sorted by path) into documents of `files_per_doc` files."""
    ordered = sorted(files, key=lambda f: f.path)
    return [ordered[i : i + files_per_doc] for i in range(0, len(ordered), files_per_doc)]


_WORKER_TOKENIZER: Tokenizer | None = None


def _init_worker(tokenizer_path: str) -> None:
    global _WORKER_TOKENIZER
    # The pool has its own processes; nested Rayon threads would only oversubscribe the cores.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_TOKENIZER = Tokenizer.load(Path(tokenizer_path))


def encode_document(tok: Tokenizer, doc: Sequence[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids of one document (`<|file|>path\\n` + text per file, then EOS) and file starts."""
    ids: list[int] = []
    starts: list[int] = []
    for path, text in doc:
        starts.append(len(ids))
        ids.extend(tok.encode_file_header(path))
        if not text.endswith("\n"):
            text += "\n"
        ids.extend(tok.encode(text))
    ids.append(tok.eos_id)
    return ids, starts


def _encode_batch(docs: list[list[tuple[str, str]]]) -> list[tuple[list[int], list[int]]]:
    assert _WORKER_TOKENIZER is not None
    return [encode_document(_WORKER_TOKENIZER, doc) for doc in docs]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


class ShardWriter:
    """Appends documents to flat token shards of about `shard_tokens` tokens each."""

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.out_dir, self.split, self.dtype, self.shard_tokens = out_dir, split, dtype, shard_tokens
        self.shards: list[dict] = []
        self._ids: list[np.ndarray] = []
        self._starts: list[int] = []
        self._n = 0

    def add(self, ids: list[int], starts: list[int]) -> None:
        self._starts.extend(self._n + s for s in starts)
        self._ids.append(np.asarray(ids, dtype=self.dtype))
        self._n += len(ids)
        if self._n >= self.shard_tokens:
            self.flush()

    def flush(self) -> None:
        if not self._n:
            return
        name = f"{self.split}_{len(self.shards):05d}"
        np.concatenate(self._ids).tofile(self.out_dir / f"{name}.bin")
        np.save(self.out_dir / f"{name}.starts.npy", np.asarray(self._starts, dtype=np.int64))
        self.shards.append({"file": f"{name}.bin", "starts": f"{name}.starts.npy", "tokens": self._n})
        self._ids, self._starts, self._n = [], [], 0


def sample_lines(texts: Iterable[str], max_chars: int, seed: int) -> list[str]:
    """A seeded sample of files' text, about `max_chars` in all, for training the tokenizer."""
    pool = list(texts)
    random.Random(seed).shuffle(pool)
    out: list[str] = []
    total = 0
    for text in pool:
        if total >= max_chars:
            break
        out.append(text)
        total += len(text)
    return out


@dataclass
class CorpusOptions:
    roots: list[Path] | None = None
    val_fraction: float = 0.05
    vocab_size: int = 8192
    tokenizer_chars: int = 20_000_000
    tokenizer_path: Path | None = None  # reuse an existing tokenizer instead of training one
    files_per_doc: int = 4
    shard_tokens: int = 16 * 1024 * 1024
    max_train_bytes: int | None = None  # cap on training text (whole packages, sorted order)
    # Per-package cap (files in path order) so a few huge packages (torch, sympy) do not dominate.
    max_package_bytes: int | None = 3 * 1024 * 1024
    workers: int = 2
    seed: int = 0


@dataclass
class CorpusSummary:
    out_dir: Path
    packages_used: int
    packages_skipped: int
    files: dict[str, int]
    tokens: dict[str, int]
    rejected: dict[str, int]


def build_corpus(out_dir: Path, opts: CorpusOptions, log=print) -> CorpusSummary:
    out_dir.mkdir(parents=True, exist_ok=True)
    packages = discover_packages(opts.roots)
    manifest: list[dict] = []
    usable: list[Package] = []
    for pkg in sorted(packages, key=lambda p: p.name):
        entry = {"name": pkg.name, "source": pkg.source, "license": pkg.license}
        if pkg.license is None:
            manifest.append({**entry, "used": False, "reason": "license not permissive or unknown"})
        elif not pkg.files:
            manifest.append({**entry, "used": False, "reason": "no .py files"})
        else:
            usable.append(pkg)
    rejected: dict[str, int] = {}
    kept = collect_files(usable, stats=rejected)
    split_files: dict[str, list[list[SourceFile]]] = {"train": [], "val": []}
    train_bytes = 0
    for pkg in usable:
        files = cap_files(kept[pkg.name], opts.max_package_bytes)
        split = "val" if is_validation(pkg.name, opts.val_fraction) else "train"
        size = sum(len(f.text.encode()) for f in files)
        entry = {"name": pkg.name, "source": pkg.source, "license": pkg.license}
        if not files:
            manifest.append({**entry, "used": False, "reason": "no files left after filtering"})
            continue
        if split == "train" and opts.max_train_bytes is not None and train_bytes + size > opts.max_train_bytes:
            manifest.append({**entry, "used": False, "reason": "over --max-train-bytes"})
            continue
        train_bytes += size if split == "train" else 0
        split_files[split].append(files)
        manifest.append({**entry, "used": True, "split": split, "files": [f.path for f in files], "bytes": size})
    log(f"packages: {sum(1 for m in manifest if m['used'])} used, {sum(1 for m in manifest if not m['used'])} skipped; rejected files: {rejected}")

    if opts.tokenizer_path is not None:
        tokenizer = Tokenizer.load(opts.tokenizer_path)
    else:
        train_texts = (f.text for files in split_files["train"] for f in files)
        tokenizer = train_tokenizer(sample_lines(train_texts, opts.tokenizer_chars, opts.seed), opts.vocab_size)
    tokenizer_path = out_dir / "tokenizer.json"
    tokenizer.save(tokenizer_path)
    log(f"tokenizer: {tokenizer.vocab_size} tokens")

    dtype = token_dtype(tokenizer.vocab_size)
    index: dict = {"dtype": dtype.name, "vocab_size": tokenizer.vocab_size, "splits": {}}
    tokens: dict[str, int] = {}
    for split, packs in split_files.items():
        docs = [[(f.path, f.text) for f in doc] for files in packs for doc in documents(files, opts.files_per_doc)]
        writer = ShardWriter(out_dir, split, dtype, opts.shard_tokens)
        for ids, starts in _encode_parallel(docs, tokenizer_path, opts.workers):
            writer.add(ids, starts)
        writer.flush()
        index["splits"][split] = writer.shards
        tokens[split] = sum(s["tokens"] for s in writer.shards)
        log(f"{split}: {len(docs)} documents, {tokens[split]:,} tokens in {len(writer.shards)} shards")
    (out_dir / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return CorpusSummary(
        out_dir,
        packages_used=sum(1 for m in manifest if m["used"]),
        packages_skipped=sum(1 for m in manifest if not m["used"]),
        files={s: sum(len(f) for f in p) for s, p in split_files.items()},
        tokens=tokens,
        rejected=rejected,
    )


def _encode_parallel(
    docs: list[list[tuple[str, str]]], tokenizer_path: Path, workers: int, batch: int = 64
) -> Iterator[tuple[list[int], list[int]]]:
    """Encode documents in worker processes, yielding results in document order."""
    batches = [docs[i : i + batch] for i in range(0, len(docs), batch)]
    if workers <= 1 or len(batches) <= 1:
        _init_worker(str(tokenizer_path))
        for b in batches:
            yield from _encode_batch(b)
        return
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(str(tokenizer_path),)) as pool:
        for result in pool.map(_encode_batch, batches):
            yield from result


# ---------------------------------------------------------------------------------------- reading


def load_index(data_dir: Path) -> dict:
    path = data_dir / "index.json"
    if not path.is_file():
        raise InputError(f"{data_dir}: no index.json (build the corpus with `dcode train corpus`)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_split(data_dir: Path, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(tokens memmap, file start offsets) per shard of a split."""
    index = load_index(data_dir)
    dtype = np.dtype(index["dtype"])
    shards = []
    for shard in index["splits"].get(split, []):
        ids = np.memmap(data_dir / shard["file"], dtype=dtype, mode="r")
        shards.append((ids, np.load(data_dir / shard["starts"])))
    return shards


def manifest_packages(data_dir: Path, split: str) -> list[dict]:
    manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    return [m for m in manifest if m.get("used") and m.get("split") == split]


if __name__ == "__main__":  # pragma: no cover - convenience entry point
    print(build_corpus(Path(sys.argv[1] if len(sys.argv) > 1 else "data/corpus"), CorpusOptions()))
