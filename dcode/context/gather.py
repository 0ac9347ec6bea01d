"""Budgeted context assembly: what the model sees around a hole, and why.

The local text around the hole comes first: the file's own prefix and suffix get a guaranteed 60% of
the token budget (LOCAL_SHARE). An infilling model leans hardest on the code right next to the
hole, so that share is never given away; whatever the chunks below leave unused flows back to it.

The rest goes to ranked chunks:

* the enclosing scope chain (signatures and docstrings of the class/function around the hole),
  when the prefix cut has lost them,
* the file's imports, when the prefix cut has lost them,
* definitions of the identifiers used in and around the hole, looked up in the repository index,
* signatures of the sibling definitions (other methods of the class, other top-level functions).

Ranking is a simple score we can defend, in the spirit of aider's repo map but local to the hole
instead of a whole-repository PageRank. Identifiers are read from the syntax tree with their role:
a plain name can mean a function, class or type; `obj.name` a method or field; `self.name` a member
of this file's class; a name bound locally (parameter, assignment) means the local, not a definition
elsewhere, and Python builtins mean the builtins. A use counts more the closer it is to the hole (in
the hole or the marker's hint 4, in the enclosing definition 3, within NEAR_LINES lines 2, imported
by the file 1.5), plus a little for repeated uses. A definition's score is that weight divided by the
number of definitions the name could mean (with n candidates, each is the one meant ~1/n of the
time), times a locality factor: 2 if its file is imported by the target file, 1.5 in the same file,
1.3 in the same directory, 0.5 for private names of other files, 0.3 for test code when the target
is not a test. The scope chain and imports score above any definition because they are tiny and
always relevant; sibling signatures sit below a direct use.

Chunks are taken in score order (`selection`): a definition that does not fit whole is tried as a
signature-only summary, the imports keep as many statements as fit (those the code around the
hole uses first), and a chunk that does not fit at all is dropped. An imported name is looked up
where its import says it comes from (`imports`): a name from a module outside the repository is
not any same-named definition here. Every cut is recorded: `dropped`, `truncated` and `notes` say
what was lost.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Callable
from pathlib import Path

import tree_sitter

from dcode.context.budget import CountTokens, fit_text
from dcode.context.definitions import signature_of
from dcode.context.identifiers import attribute_receiver, identifier_nodes, identifier_role, import_modules, import_nodes
from dcode.context.imports import ImportedNames, bound_names
from dcode.context.index import RepoIndex
from dcode.context.languages import PLAIN_TEXT
from dcode.context.outline import Definition, Import, definition_records
from dcode.context.parsed import ParsedFile
from dcode.context.ranking import NameUse, can_refer, is_test_path, locality
from dcode.context.selection import Candidate, select
# Front ends import format_context from here, beside gather_context whose result it reports.
from dcode.context.result import ContextResult
from dcode.context.summary import definition_summary, indent_at
from dcode.context.syntax import CLASS_LIKE, FUNCTION_LIKE, node_text
from dcode.context.target import Target, indent_unit

LOCAL_SHARE = 0.6  # of the budget, guaranteed to the file's own prefix/suffix (see module docstring)
PREFIX_SHARE = 0.7  # of the local share: code before the hole says more than code after it
NEAR_LINES = 30
MAX_NAMES = 60  # identifiers looked up per target, the heaviest first
MAX_DEFS_PER_NAME = 3
MAX_CANDIDATES = 120  # the best-scored candidates considered at all

SCORE_SCOPE = 100.0
SCORE_IMPORTS = 50.0
SCORE_SIBLINGS = 1.5
_WEIGHT_HOLE, _WEIGHT_SCOPE, _WEIGHT_NEAR, _WEIGHT_IMPORTED, _WEIGHT_OWN_NAME = 4.0, 3.0, 2.0, 1.5, 0.5

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# --------------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------------


class _Gatherer:
    def __init__(self, target: Target, index: RepoIndex | None, budget: int, count_tokens: CountTokens) -> None:
        self.target = target
        self.index = index
        self.budget = max(0, int(budget))
        self.count = count_tokens
        self.notes: list[str] = []
        self.lang = target.language
        parsed = ParsedFile(target.path, target.text, self.lang)
        self.syntax, self.offsets, self.data, self.tree = parsed.syntax, parsed.offsets, parsed.data, parsed.tree
        self.defs = parsed.definitions
        self.rel = self._relative_path()
        # Where definitions name themselves: a name written there is not a use of it.
        self._definition_names = {d.name_node.start_byte for d in self.defs if d.name_node is not None}
        self._file_bytes: dict[str, bytes] = {}
        self._local_defs: dict[str, list[Definition]] | None = None
        self._target_is_test = is_test_path(self.rel)
        self.unit = "    "
        self._imports = ImportedNames(self.tree, self.lang, self.rel, index.files if index is not None else {})
        self._receivers: dict[str, set[str]] = {}  # name -> what it is an attribute of (`random` in `random.x`)

    def _relative_path(self) -> str:
        if self.index is not None:
            rel = self.index.relpath(self.target.path)
            if rel is not None:
                return rel
            self.notes.append(f"{self.target.path} is outside the indexed repository {self.index.root}")
        return (
            Path(self.target.path).name if Path(self.target.path).is_absolute() else Path(self.target.path).as_posix()
        )

    # -- local prefix/suffix -------------------------------------------------------------------

    def split_local(self, cap: int) -> tuple[str, int, str, int]:
        """Prefix (keeping its end) and suffix (keeping its start) within `cap` tokens together."""
        prefix_all = self.target.text[: self.target.start]
        suffix_all = self.target.text[self.target.end :]
        suffix_cap = int(cap * (1 - PREFIX_SHARE))
        prefix, prefix_tokens = fit_text(prefix_all, cap - suffix_cap, self.count, keep="end")
        suffix, suffix_tokens = fit_text(suffix_all, cap - prefix_tokens, self.count, keep="start")
        if len(prefix) < len(prefix_all) and cap - suffix_tokens > prefix_tokens:
            prefix, prefix_tokens = fit_text(prefix_all, cap - suffix_tokens, self.count, keep="end")
        return prefix, prefix_tokens, suffix, suffix_tokens

    def _window(self, prefix: str, suffix: str) -> tuple[int, int]:
        """Byte range of the file visible through the local prefix, hole and suffix."""
        start = self.offsets.to_byte(self.target.start - len(prefix))
        end = self.offsets.to_byte(self.target.end + len(suffix))
        return start, end

    # -- candidates ----------------------------------------------------------------------------

    def candidates(self, window: tuple[int, int]) -> list[Candidate]:
        found = [*self._scope_candidate(window), *self._import_candidate(window)]
        found.extend(self._definition_candidates(window))
        found.extend(self._sibling_candidate(window))
        unique: dict[tuple[str, int, int], Candidate] = {}
        for cand in found:
            if cand.key not in unique or unique[cand.key].score < cand.score:
                unique[cand.key] = cand
        return sorted(unique.values(), key=lambda c: -c.score)

    def _scope_candidate(self, window: tuple[int, int]) -> list[Candidate]:
        headers: list[str] = []
        names: list[str] = []
        text = self.target.text
        for scope in self.target.scopes:
            line_start = self.offsets.line_start(scope.start)
            if self.offsets.to_byte(line_start) >= window[0]:
                continue  # the local prefix shows this header already
            headers.append(text[line_start : scope.header_end].rstrip())
            names.append(scope.qualname or scope.name)
        if not headers:
            return []
        full = "\n".join(headers) + "\n"
        signatures = "\n".join(h.split("\n", 1)[0] for h in headers) + "\n"
        reason = "enclosing scopes: " + " > ".join(names)
        forms = [(full, ""), (signatures, " (signature lines only)")]
        span = (self.offsets.to_byte(self.offsets.line_start(self.target.scopes[0].start)), self.target.start_byte)
        return [Candidate((self.rel, -1, -1), self.rel, reason, SCORE_SCOPE, lambda: forms, span=span)]

    def _import_candidate(self, window: tuple[int, int]) -> list[Candidate]:
        if self.tree is None:
            return []
        nodes = [
            n for n in import_nodes(self.tree, self.lang)
            if (n.start_byte < window[0] or n.end_byte > window[1]) and not self._inside_function(n)
        ]  # fmt: skip
        if not nodes:
            return []
        text = "\n".join(node_text(n) for n in nodes) + "\n"
        lines = (nodes[0].start_point[0] + 1, nodes[-1].end_point[0] + 1)
        span = (nodes[0].start_byte, nodes[-1].end_byte)
        # Cut to fit, the statements that import a name the visible code uses go first.
        seen = {node_text(n) for n in identifier_nodes(self.tree, self.lang, *window)}
        used = [bool(seen.intersection(bound_names(n, self.lang))) for n in nodes]
        pieces = [node_text(n) + "\n" for first in (True, False) for n, u in zip(nodes, used) if u == first]
        return [Candidate((self.rel, -2, -2), self.rel, f"imports of {self.rel}", SCORE_IMPORTS,
                          lambda: [(text, "")], lines, span, pieces)]

    def _inside_function(self, node: tree_sitter.Node) -> bool:
        """Imports local to some other function are that function's business, not the file's."""
        return any(
            d.kind in FUNCTION_LIKE and d.node.start_byte <= node.start_byte and node.end_byte <= d.node.end_byte
            for d in self.defs
        )

    def _weighted_names(self) -> dict[str, NameUse]:
        """Identifiers worth looking up, weighted by how close to the hole they are used."""
        target, text = self.target, self.target.text
        uses: dict[str, NameUse] = {}
        bound: set[str] = set()

        def add(found: list[tuple[str, str]], weight: float, label: str) -> None:
            for name, role in found:
                if role == "bind":
                    bound.add(name)
                    continue
                use = uses.setdefault(name, NameUse(weight, label))
                use.count += 1
                use.bare |= role in ("use", "any")
                use.attr |= role in ("attr", "any")
                use.self_attr |= role == "self"
                if use.weight < weight:
                    use.weight, use.label = weight, label

        # A marker's hint is prose: every word in it counts, whatever its role.
        add([(w, "any") for w in _IDENTIFIER.findall(target.hint or "")], _WEIGHT_HOLE, "named in the hint")
        add(self._uses(target.start, target.end), _WEIGHT_HOLE, "used in the hole")
        if target.scopes:
            inner = target.scopes[-1]
            label = f"used in {inner.qualname or inner.name}"
            add(self._uses(inner.start, target.start) + self._uses(target.end, inner.end), _WEIGHT_SCOPE, label)
        first, last = target.line_range
        chars = self.offsets.line_chars
        near_start = chars[max(0, first - 1 - NEAR_LINES)]
        near_end = chars[last + NEAR_LINES] if last + NEAR_LINES < len(chars) else len(text)
        add(self._uses(near_start, target.start) + self._uses(target.end, near_end), _WEIGHT_NEAR, "used near the hole")
        nodes = import_nodes(self.tree, self.lang) if self.tree is not None else []
        imported = self._imports.imported_names() if self._imports.resolves else [
            name for node in nodes for name in import_modules(node)[1]]
        add([(name, "use") for name in imported], _WEIGHT_IMPORTED, f"imported by {self.rel}")
        for name in bound:  # a local variable, not the definition of that name elsewhere
            if name in uses:
                uses[name].bare = False
        if self.lang.name == "python":  # `str`, `len`... mean the builtins, whoever else defines them
            for name in _PYTHON_BUILTINS & uses.keys():
                uses[name].bare = False
        for scope in target.scopes:  # the definition being written is not context for itself
            if scope.name in uses:
                uses[scope.name].weight, uses[scope.name].label = (
                    _WEIGHT_OWN_NAME,
                    "same name as the enclosing definition",
                )
        kept = {n: u for n, u in uses.items() if len(n) > 1 and (u.bare or u.attr or u.self_attr)}
        for use in kept.values():
            use.weight += 0.25 * math.log(max(1, use.count))
        return dict(sorted(kept.items(), key=lambda kv: -kv[1].weight)[:MAX_NAMES])

    def _uses(self, start: int, end: int) -> list[tuple[str, str]]:
        """(identifier, role) between two character offsets.

        Roles: use (a plain name), attr (`obj.name`), self (`self.name`/`this.name`), bind (a local
        being introduced), any (unparsed text: could be anything).
        """
        if end <= start:
            return []
        if self.tree is None:
            return [(w, "any") for w in _IDENTIFIER.findall(self.target.text[start:end])]
        b0, b1 = self.offsets.to_byte(start), self.offsets.to_byte(end)
        found = []
        for node in identifier_nodes(self.tree, self.lang, b0, b1):
            if node.start_byte in self._definition_names:
                continue
            role, receiver = identifier_role(node), None
            if role == "attr" and (receiver := attribute_receiver(node)) in _SELF_NAMES:
                role = "self"
            elif role == "attr":
                self._receivers.setdefault(node_text(node), set()).add(receiver or "")
            found.append((node_text(node), role))
        return found

    def _import_stems(self) -> set[str]:
        stems: set[str] = set()
        if self.index is not None and (info := self.index.files.get(self.rel)) is not None:
            return info.import_stems()
        if self.tree is not None:
            for node in import_nodes(self.tree, self.lang):
                modules, imported = import_modules(node)
                stems |= Import("", modules, imported, 0).stems()
        return stems

    def _same_file_definitions(self) -> dict[str, list[Definition]]:
        """This file's definitions from a fresh parse (the index may lag behind unsaved edits)."""
        if self._local_defs is not None:
            return self._local_defs
        by_name: dict[str, list[Definition]] = {}
        self._local_defs = by_name
        if self.syntax is None:
            return by_name
        for record in definition_records(self.defs, self.syntax, self.data, self.rel, self.lang.name):
            by_name.setdefault(record.name, []).append(record)
        return by_name

    def _definition_candidates(self, window: tuple[int, int]) -> list[Candidate]:
        local = self._same_file_definitions()
        stems = self._import_stems()
        target_dir = self.rel.rsplit("/", 1)[0] if "/" in self.rel else ""
        hole_bytes = (self.target.start_byte, self.target.end_byte)
        result: list[Candidate] = []
        for name, use in self._weighted_names().items():
            found = list(local.get(name, []))
            origin = None if use.self_attr else self._imports.origin(name, use.bare, self._receivers.get(name))
            names, files = ([name], None) if origin is None else origin[:2]
            if self.index is not None:  # an imported name is only what its module defines
                others = [d for n in names for d in self.index.lookup(n) if d.path != self.rel]
                found += [d for d in others if files is None or d.path in files]
                if origin is not None and not files and any(can_refer(use, d, self.rel) for d in others):
                    self.notes.append(f"{name} is imported from {origin[2]}, outside the repository: "
                                      f"the definitions of {names[0]} here are not it")
            found = [d for d in found if can_refer(use, d, self.rel)]
            if not found:
                continue
            weight, label = use.weight, use.label
            # With n definitions of a name, each is the one meant with probability ~1/n.
            specificity = 1.0 / len(found)
            scored: list[tuple[float, Definition]] = []
            for defn in found:
                if defn.path == self.rel:
                    if window[0] <= defn.start_byte and defn.end_byte <= window[1]:
                        continue  # already visible in the local prefix/suffix
                    if defn.start_byte <= hole_bytes[0] and hole_bytes[1] <= defn.end_byte:
                        continue  # the definition being written (or around it), not context for itself
                scored.append((weight * specificity * locality(defn, self.rel, stems, target_dir, self._target_is_test), defn))
            scored.sort(key=lambda item: -item[0])
            for score, defn in scored[:MAX_DEFS_PER_NAME]:
                where = "this file" if defn.path == self.rel else defn.path
                reason = f"definition of {defn.qualname} ({label}; {defn.kind} in {where})"
                span = (defn.start_byte, defn.end_byte) if defn.path == self.rel else None
                result.append(
                    Candidate(
                        (defn.path, defn.start_byte, defn.end_byte), defn.path, reason, score,
                        self._definition_forms(defn), (defn.start_line, defn.end_line), span,
                    )
                )  # fmt: skip
        return result

    # -- rendering definitions -----------------------------------------------------------------

    def _source_of(self, path: str) -> bytes:
        if path == self.rel:
            return self.data
        if path not in self._file_bytes:
            try:
                self._file_bytes[path] = self.index.read_bytes(path) if self.index is not None else b""
            except OSError:
                self._file_bytes[path] = b""
        return self._file_bytes[path]

    def _definition_forms(self, defn: Definition) -> Callable[[], list[tuple[str, str]]]:
        def forms() -> list[tuple[str, str]]:
            source = self._source_of(defn.path)
            if not source:
                return [(self._summary(defn, ""), " (signature only; file unreadable)")]
            indent = indent_at(source, defn.start_byte)
            full = indent + source[defn.start_byte : defn.end_byte].decode("utf-8", "replace").rstrip() + "\n"
            summary = self._summary(defn, indent, source)
            if defn.kind in CLASS_LIKE:
                return [(full, ""), (summary, " (outline)")]
            return [(full, ""), (summary, " (signature only)")]

        return forms

    def _summary(self, defn: Definition, indent: str, source: bytes = b"") -> str:
        members = self._members(defn) if defn.kind in CLASS_LIKE else []
        return definition_summary(defn, members, indent, self.unit, source)

    def _members(self, defn: Definition) -> list[Definition]:
        depth = defn.qualname.count(".") + 1
        pool: list[Definition]
        if defn.path == self.rel:
            pool = [d for group in self._same_file_definitions().values() for d in group]  # cached
        elif self.index is not None and (info := self.index.files.get(defn.path)) is not None:
            pool = info.definitions
        else:
            return []
        members = [
            d for d in pool
            if d.qualname.startswith(defn.qualname + ".") and d.qualname.count(".") == depth
            and defn.start_byte <= d.start_byte < defn.end_byte
        ]  # fmt: skip
        return sorted(members, key=lambda d: d.start_byte)

    def _sibling_candidate(self, window: tuple[int, int]) -> list[Candidate]:
        if not self.defs:
            return []
        scopes = self.target.scopes
        parent_qual = scopes[-2].qualname if len(scopes) >= 2 else None
        own = (self.offsets.to_byte(scopes[-1].start), self.offsets.to_byte(scopes[-1].end)) if scopes else None
        siblings = []
        for defn in self.defs:
            defn_parent = defn.parent.qualname if defn.parent is not None else None
            if defn_parent != parent_qual or (own and defn.start_byte <= own[0] < defn.end_byte):
                continue
            if window[0] <= defn.start_byte and defn.end_byte <= window[1]:
                continue
            if defn.start_byte <= self.target.start_byte and self.target.end_byte <= defn.end_byte:
                continue
            siblings.append(defn)
        if not siblings:
            return []
        where = parent_qual or "the file's top level"
        text = "".join(
            indent_at(self.data, d.outer.start_byte) + signature_of(d, self.data) + "\n" for d in siblings
        )
        reason = f"signatures of {len(siblings)} other definitions in {where}"
        span = (min(d.start_byte for d in siblings), max(d.end_byte for d in siblings))
        return [Candidate((self.rel, -3, -3), self.rel, reason, SCORE_SIBLINGS, lambda: [(text, "")], span=span)]

    # -- assembly ------------------------------------------------------------------------------

    def run(self) -> ContextResult:
        target = self.target
        if self.lang.ts_language is None:
            what = "unknown language" if self.lang.name == PLAIN_TEXT else f"no grammar for {self.lang.name}"
            self.notes.append(f"{what} for {self.rel}: plain text context")
        if self.index is None:
            self.notes.append("no repository index: definitions from this file only")
        self.unit = indent_unit(target.text)
        local_cap = int(self.budget * LOCAL_SHARE)
        prefix, prefix_tokens, suffix, suffix_tokens = self.split_local(local_cap)
        cands = self.candidates(self._window(prefix, suffix))[:MAX_CANDIDATES]
        chunk_budget = self.budget - prefix_tokens - suffix_tokens
        chosen, dropped, unrecorded = select(cands, chunk_budget, self.count)
        spare = chunk_budget - sum(c.tokens for c, _ in chosen)
        if spare > 0:  # chunks left room: let the local text have it
            prefix, prefix_tokens, suffix, suffix_tokens = self.split_local(prefix_tokens + suffix_tokens + spare)
            # The wider local text may now show what a chunk shows; do not send it twice.
            window = self._window(prefix, suffix)
            shown = [c for c, cand in chosen if cand.span and window[0] <= cand.span[0] and cand.span[1] <= window[1]]
            if shown:
                chosen = [(c, cand) for c, cand in chosen if c not in shown]
                freed = prefix_tokens + suffix_tokens + sum(c.tokens for c in shown)
                prefix, prefix_tokens, suffix, suffix_tokens = self.split_local(freed)
        chunks = [c for c, _ in chosen]
        notes = self.notes + self._cut_notes(prefix, suffix)
        if dropped:
            notes.append(f"{len(dropped) + unrecorded} context chunks dropped: over the token budget")
        truncated = bool(dropped) or len(prefix) < target.start or len(suffix) < len(target.text) - target.end
        used = sum(c.tokens for c in chunks) + prefix_tokens + suffix_tokens
        return ContextResult(
            target=target, chunks=chunks, prefix=prefix, suffix=suffix, dropped=dropped, truncated=truncated,
            notes=notes, budget_tokens=self.budget, used_tokens=used, prefix_tokens=prefix_tokens,
            suffix_tokens=suffix_tokens, target_path=self.rel,
        )  # fmt: skip

    def _cut_notes(self, prefix: str, suffix: str) -> list[str]:
        notes = []
        text, target = self.target.text, self.target
        if len(prefix) < target.start:
            kept, total = prefix.count("\n"), text.count("\n", 0, target.start)
            notes.append(f"prefix cut: kept the last {kept} of {total} lines before the hole")
        if len(suffix) < len(text) - target.end:
            kept, total = suffix.count("\n"), text.count("\n", target.end)
            notes.append(f"suffix cut: kept the first {kept} of {total} lines after the hole")
        return notes


_SELF_NAMES = frozenset({"self", "this", "cls", "Self"})
_PYTHON_BUILTINS = frozenset(dir(builtins))


def gather_context(
    target: Target, index: RepoIndex | None, budget_tokens: int, count_tokens: CountTokens
) -> ContextResult:
    """Assemble the context for `target` within `budget_tokens` (counted with `count_tokens`)."""
    return _Gatherer(target, index, budget_tokens, count_tokens).run()


