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

Steps 1-4 live in `dcode.sources`, shared with evaluation (its held-out tasks come from the same
split); this module does step 5 and reads the result back.

Output directory layout:
  tokenizer.json               trained on a sample of the training split's lines
  manifest.json                every package seen: license, split, files kept, or why skipped
  index.json                   shards per split, token dtype, token counts
  {split}_{n:05d}.bin          flat token ids
  {split}_{n:05d}.starts.npy   token offsets where each file (its `<|file|>` header) starts
"""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcode.errors import InputError
from dcode.model.tokenizer import Tokenizer, train_tokenizer
from dcode.sources.packages import Package, SourceFile, cap_files, collect_files, discover_packages, is_validation

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
