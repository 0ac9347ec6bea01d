"""Bad input is refused before anything heavy loads: the command runs in a fresh interpreter,
which reports whether torch was imported by the time dcode exited (importing it takes seconds;
a typo in a path or a model's name should not)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

# Runs the CLI as the console script does, then says whether torch was loaded.
PROBE = """
import sys
from dcode.cli import main
try:
    main()
finally:
    sys.stdout.write("torch imported: %s\\n" % ("torch" in sys.modules))
"""


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "ok.py").write_text("def f():\n    # dcode: fill\n", encoding="utf-8")
    (root / "binary.py").write_bytes(b"x = 1\0\n")
    (root / "latin.py").write_bytes(b'x = "\xff"\n')
    (root / "big.py").write_bytes(b"x = 1\n" * 400_000)  # 2.3 MiB: over the 2 MiB limit
    for var in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    return root


def run_probe(root: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCODE_")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(("args", "code", "message"), [
    (["fill", "missing.py"], 2, "no such file: missing.py"),
    (["fill", "binary.py"], 2, "binary.py is a binary file"),
    (["write", "big.py:1"], 2, "larger than dcode's limit of 2 MiB"),
    (["fill", "latin.py"], 2, "latin.py is not UTF-8"),
    (["fill", "ok.py:99"], 2, "ok.py has only 2 lines"),
    (["write", "ok.py::nope"], 2, "unknown symbol 'nope'"),
    (["fill", "ok.py", "--threshold", "7"], 2, "--threshold must be a number between 0 and 1"),
    (["--model", "no-such-model", "fill", "ok.py"], 3, "no-such-model: model directory not found"),
    (["refine", "--model", "no-such-model"], 3, "no-such-model: model directory not found"),
    (["refine", "--lines", "5-2"], 2, "--lines '5-2': expected 1 <= A <= B"),
    (["context", "missing.py"], 2, "no such file: missing.py"),
    (["info", "--model", "no-such-model"], 3, "no-such-model: model directory not found"),
])
def test_bad_input_is_refused_before_torch_loads(project, args, code, message):
    status, out, err = run_probe(project, *args)
    assert status == code, err
    assert err.startswith("dcode: error: ") and message in err and err.count("\n") == 1, err
    assert "torch imported: False" in out
