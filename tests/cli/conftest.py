"""The CLI tests' repository: one Python file with a marker, a stub and a finished function, and
dcode's config, cache and state kept inside the test's tmp folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcode.cli.app import app

PY_FILE = '''"""Geometry helpers."""
import math


def distance(a, b):
    """Euclidean distance between two points."""
    # dcode: fill


def area(r):
    """Area of a circle of radius r."""
    raise NotImplementedError


def describe(p):
    return f"point at {p}"
'''


@pytest.fixture
def repo(tmp_path, monkeypatch, shipped_model) -> Path:
    """A git repository with one Python file; dcode's config/cache/state kept inside tmp."""
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "geo.py").write_text(PY_FILE, encoding="utf-8")
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("DCODE_MODEL", str(shipped_model))
    monkeypatch.setenv("DCODE_MAX_TOKENS", "48")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(root)
    return root


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)
