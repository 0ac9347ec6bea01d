"""End-to-end: the `dcode` commands on small tmp repositories with the shipped model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcode.cli import app as cli_app
from dcode.cli import entry
from dcode.errors import GPU_OUT_OF_MEMORY, OUT_OF_MEMORY
from tests.cli.conftest import PY_FILE, invoke
from tests.conftest import REPO_ROOT, compiles


def run_dcode(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "dcode", *args], cwd=cwd, env=env, input=input,
                          capture_output=True, text=True, timeout=120)


def test_fill_shows_a_diff_and_writes_nothing(repo):
    before = (repo / "geo.py").read_bytes()
    result = invoke("fill", "geo.py", "--diff")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("--- a/geo.py\n+++ b/geo.py\n")
    assert "-    # dcode: fill" in result.stdout
    assert (repo / "geo.py").read_bytes() == before  # nothing written without --yes
    assert (repo / ".git" / "dcode" / "pending.json").is_file()


def apply_with_yes(repo, *args):
    """`--yes` writes only a verified proposal (exit 0: it parses); one that is not (it does not
    parse, is outside its function, is only a comment...) is refused with exit 4, the file
    untouched and the proposal left pending, which `accept` then applies."""
    before = (repo / "geo.py").read_bytes()
    result = invoke(*args, "--yes", "--json")
    data = json.loads(result.stdout.splitlines()[0])
    if result.exit_code == 0:
        assert data["applied"] is True and data["parses"] is True and data["problem"] is None
        assert compiles((repo / "geo.py").read_text())
    else:
        assert result.exit_code == 4 and data["problem"], result.output  # e.g. "does not parse", "is outside area"
        assert f"the proposal {data['problem']}; not written" in result.stderr
        assert (repo / "geo.py").read_bytes() == before
        assert invoke("accept").exit_code == 0
    return data


def test_fill_yes_writes_only_a_file_that_parses_and_undo_restores_bytes(repo):
    before = (repo / "geo.py").read_bytes()
    data = apply_with_yes(repo, "fill", "geo.py")
    assert data["path"] == "geo.py"
    after = (repo / "geo.py").read_text()
    assert after != before.decode() and "# dcode: fill" not in after
    # The fill went where the marker was; everything around it is intact.
    assert after.startswith(PY_FILE.split("    # dcode: fill")[0])
    assert after.endswith(PY_FILE.split("    # dcode: fill\n")[1])
    assert invoke("undo").exit_code == 0
    assert (repo / "geo.py").read_bytes() == before


def test_write_regenerates_a_function_body(repo):
    apply_with_yes(repo, "write", "geo.py::area")
    text = (repo / "geo.py").read_text()
    assert 'def area(r):\n    """Area of a circle of radius r."""\n' in text
    assert "raise NotImplementedError" not in text
    assert 'def describe(p):\n    return f"point at {p}"\n' in text


def test_write_with_an_instruction_keeps_it_for_refine(repo):
    before = (repo / "geo.py").read_bytes()
    result = invoke("write", "geo.py::area", "--instruction", "use math.pi", "--diff")
    assert result.exit_code == 0, result.output
    assert "use math.pi" not in result.stdout  # the instruction steers the model; it is not written
    pending = json.loads((repo / ".git" / "dcode" / "pending.json").read_text())
    assert pending["instruction"] == "use math.pi"
    assert invoke("refine", "--diff").exit_code == 0
    assert json.loads((repo / ".git" / "dcode" / "pending.json").read_text())["instruction"] == "use math.pi"
    assert (repo / "geo.py").read_bytes() == before
    result = invoke("write", "geo.py::area", "-i", "  ")
    assert result.exit_code == 2 and "--instruction is empty" in result.stderr


def test_refine_changes_only_the_pending_region(repo):
    assert invoke("fill", "geo.py:16", "--diff").exit_code == 0  # the `return f"..."` line
    pending = json.loads((repo / ".git" / "dcode" / "pending.json").read_text())
    result = invoke("refine", "--passes", "2", "--json")
    assert result.exit_code == 0, result.output
    refined = json.loads((repo / ".git" / "dcode" / "pending.json").read_text())
    assert refined["passes"] == pending["passes"] + 2
    assert (refined["start"], refined["end"]) == (pending["start"], pending["end"])
    diff = json.loads(result.stdout)["diff"]
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    # Only the line that was the hole is removed; additions are the (refined) fill.
    assert [line for line in changed if line.startswith("-")] == ['-    return f"point at {p}"']
    assert invoke("accept").exit_code == 0
    assert not (repo / ".git" / "dcode" / "pending.json").exists()


def test_refine_lines_and_reject(repo):
    from dcode.edit.change import numbered_diff

    assert invoke("fill", "geo.py", "--diff").exit_code == 0
    before = json.loads((repo / ".git" / "dcode" / "pending.json").read_text())
    result = invoke("refine", "--lines", "7-7", "--diff")  # the file's line 7, where the marker was
    assert result.exit_code == 0, result.output
    after = json.loads((repo / ".git" / "dcode" / "pending.json").read_text())
    # The same hole, refined once more; the fill's lines after line 7 are kept as they were.
    assert (after["start"], after["end"], after["passes"]) == (before["start"], before["end"], before["passes"] + 1)
    assert PY_FILE[: before["start"]].count("\n") == 6  # the fill begins on line 7
    assert after["fill"].endswith("".join(before["fill"].splitlines(keepends=True)[1:]))
    # What is printed is the diff of the refined proposal, and the file is untouched.
    refined = PY_FILE[: after["start"]] + after["fill"] + PY_FILE[after["end"]:]
    assert result.stdout == numbered_diff([("geo.py", PY_FILE, refined)])
    assert (repo / "geo.py").read_text() == PY_FILE
    assert invoke("reject").exit_code == 0
    result = invoke("accept")
    assert result.exit_code == 2 and "no pending proposal" in result.stderr


def test_file_changed_behind_dcodes_back_is_not_overwritten(repo):
    assert invoke("fill", "geo.py", "--diff").exit_code == 0
    (repo / "geo.py").write_text(PY_FILE + "\n# edited meanwhile\n")
    result = invoke("accept")
    assert result.exit_code == 2
    assert "changed since dcode read it" in result.stderr
    assert (repo / "geo.py").read_text().endswith("# edited meanwhile\n")


@pytest.mark.parametrize(
    "setup, target, message",
    [
        (lambda r: None, "missing.py", "no such file"),
        (lambda r: (r / "blob.py").write_bytes(b"\x00\x01binary"), "blob.py", "binary"),
        (lambda r: (r / "latin.py").write_bytes(b"x = '\xe9'\n"), "latin.py", "UTF-8"),
        (lambda r: None, "geo.py:999", "line"),
        (lambda r: None, "geo.py::nope", "nope"),
        (lambda r: (r / "big.py").write_bytes(b"x = 1\n" * 400_000), "big.py", "larger than dcode's limit of 2 MiB"),
    ],
)
def test_bad_input_exits_2_with_one_line(repo, setup, target, message):
    setup(repo)
    result = run_dcode("fill", target, cwd=repo)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcode: error:") and message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["fill", "geo.py", "--threshold", "abc"], "Invalid value for '--threshold'"),
        (["fill", "geo.py", "--bogus"], "No such option: --bogus"),
        (["undo", "-n", "0"], "Invalid value for '--steps' / '-n'"),
        (["fill"], "Missing argument 'target'"),
        (["--dtype", "float64", "fill", "geo.py"], "--dtype must be auto, float32, bfloat16 or float16"),
        (["fill", "geo.py", "--steps", "0"], "--steps must be a whole number of at least 1, got 0"),
        (["fill", "geo.py", "--temperature", "-1"], "--temperature must be a number of at least 0"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(repo, args, message):
    result = run_dcode(*args, cwd=repo)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dcode: error:") and message in lines[0], result.stderr


def test_a_bad_setting_in_the_project_is_a_usage_error(repo, monkeypatch):
    monkeypatch.delenv("DCODE_MAX_TOKENS")
    (repo / ".dcode.toml").write_text("max_tokens = 0\n")
    result = run_dcode("fill", "geo.py", cwd=repo)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"dcode: error: {repo / '.dcode.toml'}: max_tokens must be a whole number of at least 1, got 0"]


def test_missing_model_exits_3(repo, tmp_path):
    result = run_dcode("--model", str(tmp_path / "nowhere"), "fill", "geo.py", cwd=repo)
    assert result.returncode == 3 and "not found" in result.stderr


@pytest.mark.parametrize("error, message", [(MemoryError(), OUT_OF_MEMORY),
                                            (type("OutOfMemoryError", (RuntimeError,), {})(), GPU_OUT_OF_MEMORY)])
def test_running_out_of_memory_is_one_line_and_exit_3(monkeypatch, capsys, error, message):
    def run_out(**kwargs):
        raise error

    monkeypatch.setattr(cli_app, "app", run_out)
    monkeypatch.setattr(sys, "argv", ["dcode", "info"])
    with pytest.raises(SystemExit) as exited:
        entry.main()
    # The same words `dcode complete` and `dcode serve` answer with (dcode.errors.out_of_memory).
    assert exited.value.code == 3 and capsys.readouterr().err == f"dcode: error: {message}\n"


def test_complete_round_trip(repo):
    request = {"input_prefix": "def double(x):\n    return ", "input_suffix": "\n", "n_predict": 16,
               "filename": str(repo / "geo.py"), "threshold": 0.5, "unknown_field": True}
    result = run_dcode("complete", cwd=repo, input=json.dumps(request))
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert isinstance(response["content"], str) and response["tokens_predicted"] <= 16
    assert response["timings"]["forward_passes"] >= 1 and response["model"]


def test_complete_jsonl_survives_malformed_lines(repo):
    good = json.dumps({"input_prefix": "x = ", "input_suffix": "\n", "n_predict": 8, "tokens_per_step": 1})
    lines = "\n".join([good, "{not json", json.dumps({"input_prefix": 5}), "", good]) + "\n"
    result = run_dcode("complete", "--jsonl", cwd=repo, input=lines)
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 5  # one response per line, a blank one included
    # one token per pass: at least as many passes as tokens kept (pads are committed too)
    assert "error" not in out[0] and out[0]["timings"]["forward_passes"] >= out[0]["tokens_predicted"]
    assert out[1]["error"]["code"] == "invalid_json"
    assert out[2]["error"]["code"] == "invalid_request"
    assert out[3]["error"]["code"] == "invalid_json" and "empty" in out[3]["error"]["message"]
    assert out[4]["content"] == out[0]["content"]  # same request, same answer: deterministic


def test_context_command(repo):
    result = invoke("context", "geo.py", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "chunks" in data and "prefix" in data


def test_info(repo, shipped_model):
    result = invoke("info", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["path"] == str(shipped_model.resolve()) and data["device"] == "cpu"
    # Numbers for programs (a count, bytes), not display strings such as "4.01M" or "3.9 MiB".
    assert isinstance(data["parameters"], int) and 1e6 < data["parameters"] < 1e8
    assert isinstance(data["weights_on_disk"], int) and data["weights_on_disk"] > 2**20
    assert isinstance(data["heads"], int) and isinstance(data["kv_heads"], int)
    assert set(data["special_ids"]) >= {"mask", "pad", "eos"}
    text = invoke("info").stdout
    assert f"{data['parameters'] / 1e6:.2f}M" in text and " MiB" in text and "mask " in text


def test_help_reads_well():
    result = invoke("--help")
    for command in ("fill", "write", "refine", "accept", "reject", "undo", "context", "info", "complete"):
        assert command in result.stdout
