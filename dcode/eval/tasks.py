"""Infilling tasks: held-out holes cut from validation packages, and functional holes cut from
small functions that carry their own tests (tests/data/functional)."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from dcode.errors import InputError
from dcode.sources.packages import SourceFile, collect_files, discover_packages

TESTS_MARKER = "# --- tests ---"
HELDOUT_NAME = "heldout.json"
# The engine crops to the model's context anyway; cropping characters first keeps tokenizing
# a 3000-line file out of every task.
MAX_PREFIX_CHARS = 6000
MAX_SUFFIX_CHARS = 3000
MAX_MULTI_CHARS = 500  # a multi-line hole must fit the hole budget of a small model


@dataclass
class InfillTask:
    id: str
    kind: str  # "single", "multi" or "functional"
    path: str
    prefix: str  # text the model sees before the hole (possibly cropped)
    suffix: str  # text the model sees after the hole (possibly cropped)
    expected: str  # the lines cut out, with their newlines
    full_prefix: str  # uncropped: to rebuild the whole file for the parse check and the tests
    full_suffix: str
    tests: str = ""  # functional tasks: test code appended after the filled file

    @property
    def one_line(self) -> bool:
        """The hole is one line: decoders are told so (max_lines 1), as left to right knows it."""
        return self.expected.count("\n") <= 1


def save_tasks(tasks: Sequence[InfillTask], path: Path) -> None:
    """Write a hole set as JSON, so another machine evaluates exactly these holes (`--tasks`)."""
    from dcode.edit.files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps([asdict(t) for t in tasks], indent=1) + "\n").encode("utf-8"))


def load_tasks(path: Path) -> list[InfillTask]:
    """The hole set `save_tasks` wrote; anything else is an InputError."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise TypeError("a JSON list of holes is expected")
        return [InfillTask(**row) for row in rows]
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnicodeDecodeError, ValueError, TypeError) as e:
        raise InputError(f"{path}: not a hole set written by `dcode eval --save-tasks` ({e})") from None


def _crop(prefix: str, suffix: str) -> tuple[str, str]:
    if len(prefix) > MAX_PREFIX_CHARS:
        cut = prefix[-MAX_PREFIX_CHARS:]
        prefix = cut[cut.find("\n") + 1 :]
    if len(suffix) > MAX_SUFFIX_CHARS:
        cut = suffix[:MAX_SUFFIX_CHARS]
        suffix = cut[: cut.rfind("\n") + 1]
    return prefix, suffix


def compiles(source: str, path: str = "<eval>") -> bool:
    try:
        compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _hole_task(task_id: str, kind: str, path: str, lines: list[str], first: int, last: int, tests: str = "") -> InfillTask:
    """Cut lines[first:last] (0-based, end exclusive) out of a file."""
    full_prefix = "".join(lines[:first])
    full_suffix = "".join(lines[last:])
    prefix, suffix = _crop(full_prefix, full_suffix)
    return InfillTask(task_id, kind, path, prefix, suffix, "".join(lines[first:last]), full_prefix, full_suffix, tests)


def _line_ok(line: str) -> bool:
    """A line worth predicting: not blank, not a lone comment, not a bare bracket."""
    s = line.strip()
    return len(s) >= 4 and not s.startswith("#")


def holdout_tasks(files: Sequence[SourceFile], n_single: int, n_multi: int, seed: int = 0) -> list[InfillTask]:
    """`n_single` one-line and `n_multi` 2-10-line holes from files that compile, fixed seed."""
    rng = random.Random(seed)
    pool = sorted((f for f in files if compiles(f.text, f.path) and f.text.count("\n") >= 12), key=lambda f: (f.package, f.path))
    if not pool:
        raise InputError("no held-out source files to cut holes from")
    tasks: list[InfillTask] = []
    for kind, n in (("single", n_single), ("multi", n_multi)):
        tries = 0
        made = 0
        while made < n and tries < 50 * (n + 1):
            tries += 1
            f = pool[rng.randrange(len(pool))]
            lines = f.text.splitlines(keepends=True)
            size = 1 if kind == "single" else rng.randint(2, 10)
            first = rng.randrange(1, len(lines) - size)
            last = first + size
            if not (_line_ok(lines[first]) and _line_ok(lines[last - 1])):
                continue
            if kind == "multi" and len("".join(lines[first:last])) > MAX_MULTI_CHARS:
                continue
            if not lines[last - 1].endswith("\n"):
                continue
            # The path as training saw it in the `<|file|>` header (relative to the package root).
            tasks.append(_hole_task(f"{kind}-{made}", kind, f.path, lines, first, last))
            made += 1
    return tasks


# ------------------------------------------------------------------------- held-out source files


def heldout_spec(data_dir: Path | None, model_dir: Path | None) -> dict[str, list[str] | None]:
    """Validation package -> the files of it the corpus kept (None: all of them), from the corpus
    manifest when given, else from the exported model's `heldout.json`. Using the kept files only
    means a held-out file that duplicates a training file never becomes an evaluation task."""
    if data_dir is not None:
        manifest = data_dir / "manifest.json"
        if not manifest.is_file():
            raise InputError(f"{data_dir}: no manifest.json (build the corpus with `dcode train corpus`)")
        entries = json.loads(manifest.read_text(encoding="utf-8"))
        return {m["name"]: list(m["files"]) for m in entries if m.get("used") and m.get("split") == "val"}
    if model_dir is not None and (model_dir / HELDOUT_NAME).is_file():
        data = json.loads((model_dir / HELDOUT_NAME).read_text(encoding="utf-8"))
        files = data.get("files", {})
        return {name: files.get(name) for name in data["packages"]}
    raise InputError("no held-out package list: pass --data DIR (a corpus) or a model with heldout.json")


def heldout_files(spec: dict[str, list[str] | None], roots: Sequence[Path] | None = None) -> list[SourceFile]:
    """The held-out packages' files as found in this Python installation (or `roots`)."""
    packages = [p for p in discover_packages(roots) if p.name in spec]
    files = [
        f
        for fs in collect_files(packages).values()
        for f in fs
        if spec[f.package] is None or f.path in set(spec[f.package])
    ]
    if not files:
        raise InputError(f"none of the {len(spec)} held-out packages is installed here")
    return files


# ---------------------------------------------------------------------------- functional tasks


def default_functional_dir() -> Path | None:
    """tests/data/functional of a checkout, when there is one."""
    candidate = Path(__file__).resolve().parents[2] / "tests" / "data" / "functional"
    return candidate if candidate.is_dir() else None


def _body_lines(lines: list[str]) -> list[list[int]]:
    """Per top-level function: indices of its body lines worth predicting (docstrings skipped)."""
    bodies: list[list[int]] = []
    current: list[int] | None = None
    in_doc = False
    for i, line in enumerate(lines):
        if line.startswith("def "):
            current = []
            bodies.append(current)
            continue
        if line.strip() and not line.startswith((" ", "\t")):
            current = None  # any other top-level statement ends the function
            continue
        if current is None:
            continue
        s = line.strip()
        quotes = s.count('"""') + s.count("'''")
        if in_doc or quotes:
            if quotes == 1:
                in_doc = not in_doc
            continue
        if _line_ok(line):
            current.append(i)
    return [b for b in bodies if b]


def functional_tasks(directory: Path, n: int | None = None, seed: int = 0) -> list[InfillTask]:
    """From each `*.py` (module, then `# --- tests ---`, then test code): one single-line and one
    multi-line (2-5 consecutive body lines) hole per file, in a function body."""
    rng = random.Random(seed)
    tasks: list[InfillTask] = []
    for path in sorted(directory.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if TESTS_MARKER not in text:
            raise InputError(f"{path}: functional task without a '{TESTS_MARKER}' line")
        module, tests = text.split(TESTS_MARKER, 1)
        lines = module.splitlines(keepends=True)
        bodies = _body_lines(lines)
        if not bodies:
            raise InputError(f"{path}: no function body lines to cut")
        body = bodies[rng.randrange(len(bodies))]
        i = body[rng.randrange(len(body))]
        tasks.append(_hole_task(f"{path.stem}-single", "functional", path.name, lines, i, i + 1, tests))
        runs = [b for b in bodies if len(b) >= 2]
        if runs:
            body = runs[rng.randrange(len(runs))]
            size = rng.randint(2, min(5, len(body)))
            start = rng.randrange(len(body) - size + 1)
            first, last = body[start], body[start + size - 1] + 1
            tasks.append(_hole_task(f"{path.stem}-multi", "functional", path.name, lines, first, last, tests))
    return tasks[:n] if n is not None else tasks
