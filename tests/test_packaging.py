"""The shipped model is found from a checkout, and the wheel maps every file of it."""

from __future__ import annotations

import fnmatch
import sys
import warnings
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from dcode.model.paths import DEFAULT_MODEL_NAME, default_model_dir, shipped_weights_root

ROOT = Path(__file__).resolve().parent.parent


def test_checkout_finds_the_shipped_model():
    assert shipped_weights_root() == ROOT / "weights"
    assert default_model_dir() == ROOT / "weights" / DEFAULT_MODEL_NAME


def test_wheel_package_data_covers_every_weights_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "dcode._weights" in config["packages"]
    assert config["package-dir"]["dcode._weights"] == "weights"
    patterns = config["package-data"]["dcode._weights"]
    files = [p.relative_to(ROOT / "weights").as_posix() for p in (ROOT / "weights").rglob("*") if p.is_file()]
    assert files, "weights/ is empty"
    missed = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert missed == []


def test_shipped_model_respects_the_size_budget():
    files = [p for p in (ROOT / "weights").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 40 * 2**20
    assert all(p.stat().st_size < 15 * 2**20 for p in files)


def test_the_project_table_builds_without_deprecation_notices():
    """setuptools boxes a notice on every install for a `license = {text = ...}` table; an SPDX
    string needs setuptools >= 77, which the build system must then ask for."""
    pytest.importorskip("setuptools", minversion="77")  # a venv of Python >= 3.12 has none
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []
    assert dist.metadata.license_expression == "Apache-2.0"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert "setuptools>=77" in requires


def test_wheel_lists_every_dcode_package():
    """setuptools' `packages` is a list: a new subpackage missing from it installs as an ImportError."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dcode").rglob("__init__.py")}
    assert found - listed == set()
