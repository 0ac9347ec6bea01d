"""What context assembly hands on: the chosen chunks, the local prefix and suffix, and every cut
made to fit the budget; `format_context` is `dcode context`'s report of it."""

from __future__ import annotations

import json as _json
from dataclasses import asdict, dataclass, field
from typing import Any

from dcode.context.target import Target


@dataclass
class Chunk:
    path: str  # repository-relative
    text: str
    reason: str
    score: float
    tokens: int
    lines: tuple[int, int] | None = None  # 1-based line span in `path`, when the text is one span

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lines"] = list(self.lines) if self.lines else None
        data["score"] = round(self.score, 4)
        return data


@dataclass
class ContextResult:
    target: Target
    chunks: list[Chunk]
    prefix: str
    suffix: str
    dropped: list[Chunk] = field(default_factory=list)
    truncated: bool = False
    notes: list[str] = field(default_factory=list)
    budget_tokens: int = 0
    used_tokens: int = 0
    prefix_tokens: int = 0
    suffix_tokens: int = 0
    target_path: str = ""  # repository-relative path of the target file

    def to_dict(self) -> dict[str, Any]:
        target = self.target.to_dict()
        target["path"] = self.target_path or target["path"]
        return {
            "target": target,
            "budget_tokens": self.budget_tokens,
            "used_tokens": self.used_tokens,
            "truncated": self.truncated,
            "notes": list(self.notes),
            "chunks": [c.to_dict() for c in self.chunks],
            "dropped": [c.to_dict() for c in self.dropped],
            "prefix": self.prefix,
            "suffix": self.suffix,
            "prefix_tokens": self.prefix_tokens,
            "suffix_tokens": self.suffix_tokens,
        }


def format_context(result: ContextResult, json: bool = False) -> str:
    """`dcode context` output: each chunk with why it was chosen, then the local text and the cuts."""
    if json:
        return _json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    target = result.target
    first, last = target.line_range
    lines_text = f"{first}" if first == last else f"{first}-{last}"
    where = f" in {target.scopes[-1].qualname}" if target.scopes else ""
    chunk_tokens = sum(c.tokens for c in result.chunks)
    out = [
        f"target: {result.target_path or target.path}:{lines_text} ({target.kind.replace('_', ' ')}{where})",
        f"budget: {result.budget_tokens} tokens; used {result.used_tokens} (chunks {chunk_tokens}, "
        f"prefix {result.prefix_tokens}, suffix {result.suffix_tokens})",
    ]
    if target.hint:
        out.append(f"hint: {target.hint}")
    if target.detail:
        out.append(f"problem: {target.detail}")
    for chunk in result.chunks:
        span = _span(chunk.lines)
        out.append("")
        out.append(f"── {chunk.path}{span} · {chunk.reason} · score {chunk.score:.2f} · {chunk.tokens} tokens")
        out.append(chunk.text.rstrip("\n"))
    out.append("")
    out.append(_local_line("prefix", result.prefix, result.prefix_tokens, target.text[: target.start]))
    out.append(_local_line("suffix", result.suffix, result.suffix_tokens, target.text[target.end :]))
    for chunk in result.dropped:
        span = _span(chunk.lines)
        out.append(f"dropped: {chunk.path}{span} · {chunk.reason} · score {chunk.score:.2f} · {chunk.tokens} tokens")
    for note in result.notes:
        out.append(f"note: {note}")
    out.append(f"truncated: {'yes' if result.truncated else 'no'}")
    return "\n".join(out)


def _span(lines: tuple[int, int] | None) -> str:
    if not lines:
        return ""
    return f":{lines[0]}" if lines[0] == lines[1] else f":{lines[0]}-{lines[1]}"


def _local_line(name: str, kept: str, tokens: int, whole: str) -> str:
    kept_lines = kept.count("\n") + (1 if kept and not kept.endswith("\n") else 0)
    whole_lines = whole.count("\n") + (1 if whole and not whole.endswith("\n") else 0)
    state = "complete" if len(kept) == len(whole) else f"cut from {whole_lines} lines"
    return f"local {name}: {kept_lines} lines, {len(kept)} chars, {tokens} tokens ({state})"
