"""What the `dcode lsp` tests share: a small git workspace with holes in it, an environment that
keeps the server's config and caches out of the home directory, and the shipped model loaded in
this process with the server's settings, to compute what the CLI's code paths answer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dcode.model.loader import LoadedModel, load_model
from dcode.settings import Settings, load_settings

# The editor's settings in every test: one thread, so that the server and this process compute
# the same numbers, and short holes, so that the tests are quick.
EDITOR_SETTINGS = {"device": "cpu", "threads": 1, "max_tokens": 32}

GEO = '''"""Small geometry helpers."""


def mean(values):
    """Return the arithmetic mean of a non-empty list of numbers."""
    # dcode: fill


def area(width, height):
    """Return the area of a width x height rectangle."""
    pass
'''


@dataclass
class Workspace:
    root: Path
    env: dict[str, str]  # the server's environment

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()


def make_workspace(root: Path) -> Workspace:
    """A git repository with geo.py (a marker and a stub) and its own XDG directories."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "geo.py").write_text(GEO, encoding="utf-8")
    (root / "scratch.py").write_text("x = 1\n", encoding="utf-8")
    home = root.parent / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCODE_")}
    env.update(XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"),
               XDG_STATE_HOME=str(home / "state"), XDG_RUNTIME_DIR=str(home / "run"))
    return Workspace(root, env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Iterator[Workspace]:
    """The workspace, with this process's environment set as the server's (for the reference runs)."""
    made = make_workspace(tmp_path_factory.mktemp("lsp") / "repo")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("DCODE_"):
                patch.delenv(name)
        for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
            patch.setenv(name, made.env[name])
        yield made


@dataclass
class Reference:
    """The shipped model and the settings the server runs with, in this process."""

    model: LoadedModel
    settings: Settings


@pytest.fixture(scope="module")
def reference(workspace: Workspace) -> Iterator[Reference]:
    before = torch.get_num_threads()
    torch.set_num_threads(EDITOR_SETTINGS["threads"])
    settings, _ = load_settings(workspace.root, EDITOR_SETTINGS)
    yield Reference(load_model(None, device="cpu"), settings)
    torch.set_num_threads(before)
