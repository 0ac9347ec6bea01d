"""Where a file's imported names come from: which local names its imports bind, and which files
of the repository the imported module is. A name imported from a module outside the repository
(`from random import sample`) is that module's, never a same-named definition in some file here.

Python imports (absolute, relative, `import m as n`) and JavaScript/TypeScript imports of relative
paths (`./util`) are resolved; other imports (a bare npm package, Rust, Go, Java) are left alone:
their names are looked up across the repository as before.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection
from dataclasses import dataclass

import tree_sitter

from dcode.context.identifiers import import_modules, import_nodes
from dcode.context.languages import Language
from dcode.context.syntax import node_text

_RESOLVED = frozenset({"python", "javascript", "typescript", "tsx"})
_PYTHON_MODULE_FILES = (".py", ".pyi", "/__init__.py", "/__init__.pyi")
_SCRIPT_MODULE_FILES = ("", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx", ".d.ts",
                        "/index.js", "/index.jsx", "/index.ts", "/index.tsx")  # fmt: skip


@dataclass(frozen=True)
class Binding:
    """What an import binds a local name to: `name` of `module`, or the module itself (None)."""

    module: str  # as written: "random", "..pkg.mod", "./util"
    name: str | None
    language: str


def bound_names(node: tree_sitter.Node, lang: Language) -> list[str]:
    """The local names one import statement binds (for a language whose imports are not resolved:
    the names it lists and the last part of its module's path)."""
    if lang.name in _RESOLVED:
        return [local for local, _ in _node_bindings(node, lang.name)]
    modules, names = import_modules(node)
    return names + [re.split(r"[/\\.:]+", module.strip("/.:"))[-1] for module in modules]


def import_bindings(tree: tree_sitter.Tree, lang: Language) -> dict[str, list[Binding]]:
    """Local name -> the imports that bind it (a name can be imported in a `try` and its `except`)."""
    bound: dict[str, list[Binding]] = {}
    for node in import_nodes(tree, lang):
        for local, binding in _node_bindings(node, lang.name):
            bound.setdefault(local, []).append(binding)
    return bound


def _node_bindings(node: tree_sitter.Node, language: str) -> list[tuple[str, Binding]]:
    if language == "python" and node.type == "import_from_statement":
        module = node_text(node.child_by_field_name("module_name"))
        pairs = [_aliased(n) for n in node.children_by_field_name("name")]
        return [(local, Binding(module, name, language)) for name, local in pairs]
    if language == "python" and node.type == "import_statement":
        found = []
        for name, local in (_aliased(n) for n in node.children_by_field_name("name")):
            # `import a.b` binds `a` (the package); `import a.b as c` binds `c` to `a.b`.
            found.append((local, Binding(name, None, language)) if local != name else
                         (name.split(".")[0], Binding(name.split(".")[0], None, language)))
        return found
    source = node.child_by_field_name("source")
    if language in ("javascript", "typescript", "tsx") and source is not None:
        module = node_text(source).strip("'\"`")
        found = []
        for specifier in _descendants(node, ("import_specifier", "namespace_import")):
            if specifier.type == "namespace_import":  # `* as ns`
                found += [(node_text(c), Binding(module, None, language)) for c in specifier.named_children]
            else:
                name = node_text(specifier.child_by_field_name("name"))
                alias = specifier.child_by_field_name("alias")
                found.append((node_text(alias) if alias is not None else name, Binding(module, name, language)))
        return found
    return []


def _aliased(node: tree_sitter.Node) -> tuple[str, str]:
    """(imported name, local name) of a Python `name` or `name as alias`."""
    if node.type == "aliased_import":
        return node_text(node.child_by_field_name("name")), node_text(node.child_by_field_name("alias"))
    return node_text(node), node_text(node)


def _descendants(node: tree_sitter.Node, types: tuple[str, ...]) -> list[tree_sitter.Node]:
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        if current.type in types:
            found.append(current)
        else:
            stack.extend(current.named_children)
    return found


def module_files(binding: Binding, importer: str, files: Collection[str]) -> list[str] | None:
    """The repository files (relative paths, among `files`) whose definitions the imported module
    holds: the module's file, or every file of its package; [] when the module is outside the
    repository; None when dcode does not resolve such an import (a bare npm package)."""
    if binding.language == "python":
        return _python_files(binding.module, importer, files)
    if not binding.module.startswith("."):
        return None
    base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), binding.module))
    return [path for suffix in _SCRIPT_MODULE_FILES if (path := base + suffix) in files]


def _python_files(module: str, importer: str, files: Collection[str]) -> list[str]:
    dots = len(module) - len(module.lstrip("."))
    parts = [p for p in module[dots:].split(".") if p]
    if dots:  # relative to the importer's package, one level up per further dot
        base = posixpath.dirname(importer)
        for _ in range(dots - 1):
            base = posixpath.dirname(base)
        stem = posixpath.join(base, *parts)
        matches = [stem + suffix for suffix in _PYTHON_MODULE_FILES if stem + suffix in files]
    else:  # a package of this repository, under any source root (`src/`)
        wanted = ["/".join(parts) + suffix for suffix in _PYTHON_MODULE_FILES]
        matches = [path for path in files if any(path == w or path.endswith("/" + w) for w in wanted)]
    if not matches and not dots:  # a namespace package (a directory without __init__.py)
        matches = [path for path in files if ("/" + path).find("/" + "/".join(parts) + "/") >= 0]
    found: set[str] = set()
    for path in matches:
        if posixpath.basename(path).startswith("__init__."):  # a package: its modules re-export
            package = posixpath.dirname(path) + "/"
            found |= {f for f in files if f.startswith(package)}
        else:
            found.add(path)
    return sorted(found)


class ImportedNames:
    """A file's imports, resolved against the repository's files on demand (each module once)."""

    def __init__(self, tree: tree_sitter.Tree | None, lang: Language, importer: str, files: Collection[str]) -> None:
        self.resolves = lang.name in _RESOLVED
        self.bindings = import_bindings(tree, lang) if tree is not None and self.resolves else {}
        self.importer = importer
        self.files = files
        self._resolved: dict[Binding, list[str] | None] = {}

    def imported_names(self) -> list[str]:
        """Local names the imports bind to a name of a module (`sample`, an alias `sh`)."""
        return [local for local, bindings in self.bindings.items() if any(b.name for b in bindings)]

    def origin(self, name: str, bare: bool, receivers: set[str] | None) -> tuple[list[str], set[str], str] | None:
        """Where `name` comes from when every use of it goes through an import: a plain use of an
        imported name (`bare`), or `module.name` on imported modules (`receivers`, the names before
        the dot; None when it is not used so). Returns (the names it has there, the repository files
        that hold it: empty when its module is outside the repository, the module as written); None
        when some use is not through an import, or the import is not resolved."""
        via: list[tuple[str, Binding]] = []
        if bare:
            via += [(b.name, b) for b in self.bindings.get(name, []) if b.name is not None]
            if not via:
                return None
        for receiver in receivers if receivers is not None else ():
            modules = [b for b in self.bindings.get(receiver, []) if b.name is None]
            if not modules:
                return None
            via += [(name, b) for b in modules]
        files: set[str] = set()
        for _, binding in via:
            if binding not in self._resolved:
                self._resolved[binding] = module_files(binding, self.importer, self.files)
            resolved = self._resolved[binding]
            if resolved is None:
                return None
            files.update(resolved)
        return (sorted({original for original, _ in via}), files, via[0][1].module) if via else None
