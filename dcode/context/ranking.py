"""How likely a definition is the one a name around the hole means: which definitions a use can
refer to at all, and how near the definition's file is to the target's (see gather's docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dcode.context.outline import Definition

_TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs"})
_TEST_FILE = re.compile(r"(^test_|_test\.\w+$|_tests\.\w+$|\.(test|spec)\.\w+$|Tests?\.java$)")


def is_test_path(path: str) -> bool:
    parts = path.split("/")
    return any(p in _TEST_DIRS for p in parts[:-1]) or bool(_TEST_FILE.search(parts[-1]))


@dataclass
class NameUse:
    """How the code around a hole uses one name: how much that use weighs, and in which roles."""

    weight: float
    label: str
    count: int = 0
    bare: bool = False  # used as a plain name: functions, classes, types, globals
    attr: bool = False  # used as `obj.name`: methods, fields, module members
    self_attr: bool = False  # used as `self.name`/`this.name`: members of the enclosing class


def can_refer(use: NameUse, defn: Definition, rel: str) -> bool:
    """Whether a use of the name can mean this definition.

    `self.x` means a member of this file's class (base classes elsewhere are not tracked); a
    plain name cannot mean a method, except inside a Java/C++ class (implicit `this`).
    """
    if defn.kind in ("namespace", "module"):
        return False  # a whole namespace or module is never a useful chunk
    if use.self_attr and defn.path == rel:
        return True
    if defn.kind not in ("method", "constructor"):
        return use.bare or use.attr
    if use.attr:
        return True
    return use.bare and defn.path == rel and defn.language in ("java", "cpp")


def locality(defn: Definition, rel: str, stems: set[str], target_dir: str, target_is_test: bool) -> float:
    """How near `defn` is to the target file `rel`: the factor its score is multiplied by."""
    if defn.path == rel:
        return 1.5
    parts = defn.path.rsplit("/", 2)
    stem = parts[-1].split(".", 1)[0]
    parent = parts[-2] if len(parts) > 1 else ""
    factor = 1.0
    # `import shapes.geometry`, `use crate::parser`, `./math.js`; Go and Python packages by directory.
    if stem in stems or (parent and parent in stems):
        factor = 2.0
    elif (defn.path.rsplit("/", 1)[0] if "/" in defn.path else "") == target_dir:
        factor = 1.3
    if defn.name.startswith("_") and not defn.name.startswith("__"):
        factor *= 0.5
    if not target_is_test and is_test_path(defn.path):
        factor *= 0.3  # test helpers are rarely what production code means by a name
    return factor
