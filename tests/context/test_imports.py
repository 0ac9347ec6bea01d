"""Imported names in context assembly (issue 25, items 7 and 8): a name is looked up where its
import says it comes from, a name from outside the repository is said to be so, and the file's
imports (the best-scored chunk after the scope) are cut to fit rather than dropped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dcode.context.gather import SCORE_IMPORTS, gather_context
from dcode.context.imports import Binding, module_files
from dcode.context.index import RepoIndex
from dcode.context.result import ContextResult
from dcode.edit.targets import resolve_target

pytestmark = pytest.mark.usefixtures("cache_home")

# The shape of more-itertools: a module that defines `sample`, and one that uses random's.
MORE = '''def sample(iterable, k, weights=None):
    """Return a k-length list of elements chosen from the iterable (weighted)."""
    return list(iterable)[:k]
'''
RECIPES = '''import random
from random import randrange, sample


def random_permutation(iterable, r=None):
    """Return a random r length permutation of the elements in iterable."""
    pool = tuple(iterable)
    r = len(pool) if r is None else r
    # dcode: fill
'''


def count_tokens(text: str) -> int:
    return len(text) // 4 + 1


def repo(tmp_path: Path, recipes: str = RECIPES) -> Path:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "more.py").write_text(MORE)
    (root / "pkg" / "recipes.py").write_text(recipes)
    return root


def gather(root: Path, spec: str, budget: int = 2000) -> ContextResult:
    return gather_context(resolve_target(spec, root), RepoIndex.open(root), budget, count_tokens)


def test_a_name_imported_from_outside_the_repository_is_not_a_definition_here(tmp_path):
    root = repo(tmp_path, RECIPES.replace("    # dcode: fill", "    # dcode: fill\n    return tuple(sample(pool, r))"))
    result = gather(root, "pkg/recipes.py")
    assert not any("definition of sample" in c.reason for c in result.chunks)
    assert "sample is imported from random, outside the repository: the definitions of sample here are not it" \
        in result.notes


def test_a_name_imported_from_a_module_here_is_that_modules_definition(tmp_path):
    recipes = RECIPES.replace("import random\n", "import random\nfrom .more import sample as weighted_sample\n")
    root = repo(tmp_path, recipes.replace("# dcode: fill", "# dcode: fill\n    return weighted_sample(pool, r)"))
    result = gather(root, "pkg/recipes.py")
    chunk = next(c for c in result.chunks if "definition of sample" in c.reason)
    assert chunk.path == "pkg/more.py" and "def sample(iterable, k, weights=None):" in chunk.text


def test_a_module_attribute_is_looked_up_in_that_module(tmp_path):
    root = repo(tmp_path, RECIPES.replace("    # dcode: fill", "    # dcode: fill\n    return random.sample(pool, r)"))
    result = gather(root, "pkg/recipes.py")
    assert not any("definition of sample" in c.reason for c in result.chunks)
    assert any(note.startswith("sample is imported from random, outside the repository") for note in result.notes)


@pytest.mark.parametrize("module, name, importer, expected", [
    ("random", "sample", "pkg/recipes.py", []),
    (".more", "sample", "pkg/recipes.py", ["pkg/more.py"]),
    ("pkg.more", "sample", "tests/test_x.py", ["src/pkg/more.py"]),  # under a source root
    ("pkg", "sample", "app.py", ["src/pkg/__init__.py", "src/pkg/more.py"]),  # a package re-exports its modules
    ("..pkg.more", "sample", "src/tools/run.py", ["src/pkg/more.py"]),
])  # fmt: skip
def test_python_modules_resolve_to_repository_files_or_to_nothing(module, name, importer, expected):
    files = ["src/pkg/__init__.py", "src/pkg/more.py", "src/tools/run.py", "app.py"]
    if importer.startswith("pkg/"):
        files = ["pkg/__init__.py", "pkg/more.py", "pkg/recipes.py"]
    assert module_files(Binding(module, name, "python"), importer, files) == expected


def test_relative_script_imports_resolve_and_packages_are_left_alone():
    files = ["src/app.js", "src/math.ts", "src/ui/index.tsx"]
    assert module_files(Binding("./math", "clamp", "javascript"), "src/app.js", files) == ["src/math.ts"]
    assert module_files(Binding("./ui", "View", "javascript"), "src/app.js", files) == ["src/ui/index.tsx"]
    assert module_files(Binding("react", "useState", "javascript"), "src/app.js", files) is None


# -- item 8: the budget is filled in score order -------------------------------------------------

MANY_IMPORTS = "".join(f"from mod{i} import name{i}\n" for i in range(12))
HELPERS = "def helper(values):\n    return sorted(values)\n"
OTHERS = "".join(f"\n\ndef other{i}(x):\n    return x + {i}\n" for i in range(12))
USER = MANY_IMPORTS + "from random import sample\nfrom pkg.helpers import helper\n" + OTHERS + (
    "\n\ndef pick(values, k):\n    chosen = helper(values)\n    # dcode: fill\n"
)


def test_the_imports_are_cut_to_fit_before_a_lower_scored_chunk_gets_room(tmp_path):
    root = repo(tmp_path)
    (root / "pkg" / "helpers.py").write_text(HELPERS)
    (root / "pkg" / "user.py").write_text(USER)
    target = resolve_target("pkg/user.py", root)
    # Room for the local text and about half the imports: all of them do not fit.
    result = gather_context(target, RepoIndex.open(root), 130, count_tokens)
    imports = next(c for c in result.chunks if c.reason.startswith("imports of pkg/user.py"))
    assert imports.score == SCORE_IMPORTS and "(the first" in imports.reason
    # What the code around the hole uses comes first.
    assert imports.text.startswith("from pkg.helpers import helper\n")
    kept = [c.score for c in result.chunks]
    assert all(d.score <= min(kept) or d.tokens > imports.tokens for d in result.dropped)
