"""The layout is the data path: model -> diffusion -> context -> edit -> workflow -> front ends.

These tests read dcode's imports (module-level and inside functions; `if TYPE_CHECKING:` blocks
are left out, they never run) and fail on an import cycle, on a layer importing one above it, on
the path importing what sits beside it (training, evaluation, benches), or on a module too big to
hold in one's head.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dcode"
MAX_LINES = 500

# The data path, lowest first; `dcode.errors` sits under all of it. The front ends (cli, shell,
# hook, server, complete, lsp) sit on top and call the workflow.
PATH_LAYERS = ("dcode.model", "dcode.diffusion", "dcode.context", "dcode.edit", "dcode.settings", "dcode.remote",
               "dcode.workflow")
# Beside the path: they may import it, nothing on it may import them.
BESIDE = ("dcode.sources", "dcode.eval", "dcode.train", "dcode.bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run, at any depth."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The dcode modules `name` imports; `from package import module` counts as the module."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        out.update(t for t in targets if t in modules and t != name)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]], among: set[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), restricted to `among`."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node] & among:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(among):
        if node not in index:
            visit(node)
    return groups


def in_package(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def path_layer(name: str) -> int | None:
    """The layer of a module on the data path (0 = model), None beside or above it."""
    if in_package(name, BESIDE):
        return None
    return next((i for i, layer in enumerate(PATH_LAYERS) if in_package(name, (layer,))), None)


def oversized(names: list[str]) -> list[str]:
    modules = all_modules()
    sizes = {name: len(modules[name].read_text(encoding="utf-8").splitlines()) for name in names}
    return [f"{name}: {lines} lines" for name, lines in sorted(sizes.items()) if lines > MAX_LINES]


def test_the_walker_sees_function_level_imports_and_skips_type_checking_blocks():
    graph = import_graph()
    assert "dcode.model.adapted" in graph["dcode.model.loader"]  # imported inside load_model
    assert "dcode.model.tokenizer" not in graph["dcode.cli.render"]  # only under TYPE_CHECKING


def test_no_import_cycle():
    graph = import_graph()
    assert cycles(graph, set(graph)) == []


def test_no_layer_imports_one_above_it_nor_what_sits_beside_the_path():
    graph = import_graph()
    wrong = []
    for name, imported in sorted(graph.items()):
        layer = path_layer(name)
        if layer is None:
            continue
        for target in sorted(imported):
            target_layer = path_layer(target)
            if target != "dcode.errors" and (target_layer is None or target_layer > layer):
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_nothing_beside_the_path_is_imported_by_the_path_or_by_errors():
    graph = import_graph()
    on_path = [n for n in graph if path_layer(n) is not None or n == "dcode.errors"]
    assert [f"{n} -> {t}" for n in sorted(on_path) for t in sorted(graph[n]) if in_package(t, BESIDE)] == []


def test_no_module_is_over_the_size_limit():
    assert oversized(list(all_modules())) == []


def test_test_folders_mirror_the_packages():
    tests = Path(__file__).resolve().parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders and folders <= packages
