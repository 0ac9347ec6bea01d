"""A real editor drives `dcode lsp`: Neovim headless (Debian's package) with a small Lua config
(nvim_client.lua) attaches the server, applies "dcode: fill hole" and a completion; the buffer is
compared with what `dcode fill` and `dcode complete` make of the same text."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dcode.complete.completer import Completer
from dcode.edit.proposal import Proposal
from dcode.workflow import Request, propose
from tests.lsp.conftest import EDITOR_SETTINGS, Reference, Workspace

CONFIG = Path(__file__).with_name("nvim_client.lua")
SOURCE = '''def mean(values):
    """Return the arithmetic mean of a non-empty list of numbers."""
    # dcode: fill


def add(a, b):
    return 
'''


@pytest.mark.skipif(shutil.which("nvim") is None, reason="Neovim (nvim) is not installed")
def test_neovim_applies_fill_hole_and_a_completion_from_dcode_lsp(workspace: Workspace, reference: Reference, tmp_path):
    path = workspace.root / "stats.py"
    path.write_text(SOURCE, encoding="utf-8")
    out = tmp_path / "nvim.json"
    env = {**workspace.env, "DCODE_NVIM_OUT": str(out),
           "DCODE_LSP_CMD": json.dumps([sys.executable, "-m", "dcode", "lsp"]),
           "DCODE_LSP_SETTINGS": json.dumps(EDITOR_SETTINGS)}
    subprocess.run(["nvim", "--headless", "--clean", "-c", f"luafile {CONFIG}", str(path)], cwd=workspace.root,
                   env=env, timeout=300, capture_output=True, check=False)
    result = json.loads(out.read_text())
    assert result["error"] is None

    proposal = [p for p in propose(Request(str(path)), reference.model, reference.settings) if isinstance(p, Proposal)][-1]
    assert result["after_fill"] == proposal.new_text(SOURCE)

    filled = result["after_fill"]
    cursor = len(filled) - 1  # the end of the last line, "    return "
    assert result["cursor"] == {"line": filled.count("\n") - 1, "character": len(filled.splitlines()[-1])}
    completer = Completer(dict(EDITOR_SETTINGS))
    completer.settings, completer.model = reference.settings, reference.model
    expected = completer.answer({"input_prefix": filled[:cursor], "input_suffix": filled[cursor:],
                                 "filename": str(path)})["content"]
    assert expected.strip() and result["completion"]["newText"] == expected
    assert result["after_completion"] == filled[:cursor] + expected + filled[cursor:]
