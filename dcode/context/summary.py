"""A definition in short: its signature and doc, and for a class its members' signatures, the
form a definition takes in the context when its full text does not fit."""

from __future__ import annotations

import re

from dcode.context.outline import Definition
from dcode.context.languages import get_language


def indent_at(source: bytes, byte: int) -> str:
    """The indentation of the line `byte` is on, up to `byte`."""
    line_start = source.rfind(b"\n", 0, byte) + 1
    match = re.match(rb"[ \t]*", source[line_start:byte])
    return match.group().decode() if match else ""


def definition_summary(defn: Definition, members: list[Definition], indent: str, unit: str, source: bytes = b"") -> str:
    """Signature and doc of a definition; a class-like one also lists its members' signatures.
    Members are indented as in `source`, else one `unit` deeper than `indent`."""
    python = defn.language == "python"

    def member_line(member: Definition) -> str:
        member_indent = indent_at(source, member.start_byte) if source else indent + unit
        ending = " ..." if python else (" { ... }" if member.has_body else ";")
        return f"{member_indent}{member.signature}{ending}"

    if python:
        lines = [f"{indent}{defn.signature}"]
        if defn.doc:
            lines.append(f'{indent}    """{defn.doc}"""')
        lines.extend(member_line(m) for m in members)
        if len(lines) == 1:
            lines[0] += " ..."
        return "\n".join(lines) + "\n"
    comment = get_language(defn.language).line_comments or ("//",)
    lines = [f"{indent}{comment[0]} {defn.doc}"] if defn.doc else []
    if members and defn.has_body:
        lines.append(f"{indent}{defn.signature} {{")
        lines.extend(member_line(m) for m in members)
        lines.append(f"{indent}}}")
    else:
        lines.append(f"{indent}{defn.signature}{' { ... }' if defn.has_body else ';'}")
    return "\n".join(lines) + "\n"
