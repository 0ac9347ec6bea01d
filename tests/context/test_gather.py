"""Context assembly: cross-file definitions, the token budget, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dcode.context.budget import fit_text
from dcode.context.gather import LOCAL_SHARE, gather_context
from dcode.context.result import ContextResult, format_context
from dcode.context.index import RepoIndex
from dcode.edit.targets import resolve_target
from tests.conftest import copy_repo


def count_tokens(text: str) -> int:
    return len(text) // 4 + 1


# Keep every cache of these tests inside tmp_path, never in the real home.
pytestmark = pytest.mark.usefixtures("cache_home")


def gather(root: Path, spec: str, budget: int = 2000) -> ContextResult:
    return gather_context(resolve_target(spec, root), RepoIndex.open(root), budget, count_tokens)


def chunk_for(result: ContextResult, path: str, name: str) -> str:
    for chunk in result.chunks:
        if chunk.path == path and name in chunk.reason:
            return chunk.text
    raise AssertionError(f"no chunk for {name} from {path}: {[(c.path, c.reason) for c in result.chunks]}")


@pytest.mark.parametrize(
    ("lang", "spec", "path", "name", "snippet"),
    [
        ("python", "shapes/report.py::longest_side", "shapes/geometry.py", "distance", "return math.hypot("),
        ("javascript", "src/app.js", "src/math.js", "clamp", "Math.min(hi, Math.max(lo, x))"),
        ("javascript", "src/view.tsx::View", "src/shapes.ts", "Circle", "export class Circle"),
        ("rust", "src/lib.rs::Packet.decode", "src/parser.rs", "parse_header", "Header { len: bytes[0] as usize }"),
        ("go", "main.go::main", "stats.go", "Sum", "total += x"),
        ("java", "src/main/java/demo/Calc.java::Calc.sumOfSquares", "src/main/java/demo/MathUtil.java",
         "square", "return x * x;"),
        ("c", "src/main.c::main", "src/util.c", "clamp", "if (x < lo) return lo;"),
        ("cpp", "src/main.cpp::main", "src/shape.hpp", "Square", "class Square"),
    ],
)  # fmt: skip
def test_call_into_another_file_pulls_in_its_definition(
    tmp_path: Path, lang: str, spec: str, path: str, name: str, snippet: str
) -> None:
    result = gather(copy_repo(tmp_path, lang), spec)
    assert snippet in chunk_for(result, path, name)


def test_definition_chunks_carry_doc_comments_and_reasons(tmp_path: Path) -> None:
    result = gather(copy_repo(tmp_path, "rust"), "src/lib.rs::Packet.decode")
    text = chunk_for(result, "src/parser.rs", "parse_header")
    assert text.startswith("/// Parse the one-byte header")
    chunk = next(c for c in result.chunks if c.path == "src/parser.rs")
    assert "used in the hole" in chunk.reason and chunk.tokens == count_tokens(chunk.text)
    assert chunk.lines == (6, 9)


def test_hint_words_pull_definitions(tmp_path: Path) -> None:
    root = copy_repo(tmp_path, "python")
    (root / "shapes" / "report.py").write_text(
        "def summary(polygon):\n    # dcode: fill use longest_side and distance\n    return ''\n"
    )
    (root / "shapes" / "extra.py").write_text("from shapes.report import summary\n")
    result = gather(root, "shapes/report.py")
    assert "named in the hint" in next(c.reason for c in result.chunks if "distance" in c.reason)


def test_local_prefix_and_suffix_are_the_files_own_text(tmp_path: Path) -> None:
    root = copy_repo(tmp_path, "python")
    target = resolve_target("shapes/geometry.py", root)
    result = gather_context(target, RepoIndex.open(root), 4000, count_tokens)
    assert result.prefix == target.text[: target.start]
    assert result.suffix == target.text[target.end :]
    assert not result.truncated and result.dropped == []
    # Everything in this file is visible locally, so it is not repeated as chunks.
    assert all(c.path != "shapes/geometry.py" for c in result.chunks)


@pytest.mark.parametrize("budget", [0, 5, 20, 60, 150, 400, 2000])
def test_budget_is_respected_and_cuts_are_recorded(tmp_path: Path, budget: int) -> None:
    root = copy_repo(tmp_path, "python")
    target = resolve_target("shapes/geometry.py::Polygon.perimeter", root)
    result = gather_context(target, RepoIndex.open(root), budget, count_tokens)
    parts = sum(c.tokens for c in result.chunks) + result.prefix_tokens + result.suffix_tokens
    assert result.used_tokens == parts <= budget
    assert result.prefix_tokens == (count_tokens(result.prefix) if result.prefix else 0)
    assert all(c.tokens == count_tokens(c.text) for c in result.chunks)
    # The prefix keeps its end (next to the hole), the suffix its start.
    assert target.text[: target.start].endswith(result.prefix)
    assert target.text[target.end :].startswith(result.suffix)
    cut = len(result.prefix) < target.start or len(result.suffix) < len(target.text) - target.end
    assert result.truncated == (cut or bool(result.dropped))
    if cut:
        assert any(note.startswith(("prefix cut", "suffix cut")) for note in result.notes)
    if result.dropped:
        assert any("dropped" in note for note in result.notes)


def test_small_budget_drops_chunks_but_keeps_the_local_share(tmp_path: Path) -> None:
    root = copy_repo(tmp_path, "python")
    report = root / "shapes" / "report.py"
    report.write_text("\n".join(f"# line {i}" for i in range(200)) + "\n" + report.read_text())
    target = resolve_target("shapes/report.py::longest_side", root)
    result = gather_context(target, RepoIndex.open(root), 100, count_tokens)
    assert result.truncated
    assert result.prefix_tokens + result.suffix_tokens >= int(100 * LOCAL_SHARE) - 10
    assert result.used_tokens <= 100
    recorded = {c.reason.split(" (")[0] for c in result.chunks + result.dropped}
    assert any("distance" in reason for reason in recorded)  # either sent or listed as dropped


def test_scope_chain_and_imports_survive_a_cut_prefix(tmp_path: Path) -> None:
    root = copy_repo(tmp_path, "python")
    geometry = root / "shapes" / "geometry.py"
    source = geometry.read_text()
    filler = "".join(f"        step_{i} = {i}\n" for i in range(300))
    geometry.write_text(source.replace("        total = 0.0\n", "        total = 0.0\n" + filler))
    result = gather(root, "shapes/geometry.py", budget=300)
    scopes = next(c for c in result.chunks if c.reason.startswith("enclosing scopes"))
    assert "class Polygon:" in scopes.text and "def perimeter(self):" in scopes.text
    imports = next(c for c in result.chunks if c.reason.startswith("imports of"))
    assert imports.text == "import math\n"


def test_unknown_language_gets_plain_text_context(tmp_path: Path) -> None:
    root = copy_repo(tmp_path, "python")
    (root / "notes.weird").write_text("intro\n# dcode: fill say hello with distance\noutro\n")
    result = gather(root, "notes.weird")
    assert any(n == "unknown language for notes.weird: plain text context" for n in result.notes)
    assert (result.prefix, result.suffix) == ("intro\n", "outro\n")
    assert "distance" in " ".join(c.reason for c in result.chunks)  # the hint still finds definitions


def test_without_an_index_only_this_file_is_used(tmp_path: Path) -> None:
    root = copy_repo(tmp_path, "python")
    target = resolve_target("shapes/report.py::longest_side", root)
    result = gather_context(target, None, 2000, count_tokens)
    assert any("no repository index" in n for n in result.notes)
    assert all(c.path == "shapes/report.py" for c in result.chunks)


def test_gather_sees_edits_through_the_cache(tmp_path: Path) -> None:
    root = copy_repo(tmp_path, "python")
    assert "math.hypot" in chunk_for(gather(root, "shapes/report.py::longest_side"), "shapes/geometry.py", "distance")
    geometry = root / "shapes" / "geometry.py"
    geometry.write_text(geometry.read_text().replace("return math.hypot(", "return math.dist(a, b) or math.hypot("))
    text = chunk_for(gather(root, "shapes/report.py::longest_side"), "shapes/geometry.py", "distance")
    assert "math.dist(a, b)" in text


def test_human_report_shows_why(tmp_path: Path) -> None:
    result = gather(copy_repo(tmp_path, "rust"), "src/lib.rs::Packet.decode", budget=400)
    report = format_context(result, json=False)
    assert "target: src/lib.rs:11-12 (symbol in Packet.decode)" in report
    header = next(line for line in report.splitlines() if line.startswith("── src/parser.rs"))
    assert "definition of parse_header" in header and "score" in header and "tokens" in header
    assert "pub fn parse_header(bytes: &[u8]) -> Header {" in report
    assert "local prefix:" in report and "local suffix:" in report and "truncated: no" in report


def test_json_report_has_every_field(tmp_path: Path) -> None:
    result = gather(copy_repo(tmp_path, "go"), "main.go::main", budget=60)
    data = json.loads(format_context(result, json=True))
    assert set(data) >= {"target", "chunks", "dropped", "prefix", "suffix", "truncated", "notes", "budget_tokens",
                         "used_tokens", "prefix_tokens", "suffix_tokens"}  # fmt: skip
    assert data["target"]["path"] == "main.go" and data["target"]["kind"] == "symbol"
    assert data["used_tokens"] <= data["budget_tokens"] == 60
    for chunk in data["chunks"] + data["dropped"]:
        assert set(chunk) == {"path", "text", "reason", "score", "tokens", "lines"}


@settings(max_examples=80, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("ab \n\té"), max_size=300),
    budget=st.integers(0, 40),
    keep=st.sampled_from(["start", "end"]),
)
def test_fit_text_keeps_the_requested_end_within_budget(text: str, budget: int, keep: str) -> None:
    kept, tokens = fit_text(text, budget, count_tokens, keep)
    assert tokens <= budget
    assert tokens == (count_tokens(kept) if kept else 0)
    assert text.endswith(kept) if keep == "end" else text.startswith(kept)
    if count_tokens(text) <= budget and text:
        assert kept == text


def test_a_chunk_is_not_sent_again_when_the_local_text_grows_over_it(tmp_path: Path) -> None:
    filler = "".join(f"LIMIT_{i} = {i}\n" for i in range(40))
    helper = 'def helper(x):\n    """Help."""\n    return x * 2\n'
    source = f"{helper}\n\n{filler}\n\ndef main():\n    # dcode: fill call helper\n    return 0\n"
    (tmp_path / "m.py").write_text(source)
    target = resolve_target("m.py", tmp_path)
    # 60% of 250 tokens cannot reach back to `helper`; the room the chunks leave can.
    result = gather_context(target, None, 250, count_tokens)
    assert "def helper(x):" in result.prefix
    assert not any("helper" in c.reason for c in result.chunks)
    assert result.used_tokens <= 250
