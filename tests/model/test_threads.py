"""How many CPU threads the model runs on: the setting, else the cores free now; and OpenMP's
idle threads sleep rather than spin."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dcode.model import threads
from tests.conftest import REPO_ROOT


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A pretend machine: `cores` in this process's affinity (of `cpus` in all), a load average,
    tasks runnable right now (this one included), and optionally a cgroup CPU quota."""

    def make(cores: int, load: float = 0.0, runnable: int = 1, cpus: int | None = None, quota: str | None = None):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
        monkeypatch.setattr(os, "cpu_count", lambda: cpus or cores)
        monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
        loadavg = tmp_path / "loadavg"
        loadavg.write_text(f"{load:.2f} {load:.2f} {load:.2f} {runnable}/300 4242\n")
        monkeypatch.setattr(threads, "LOADAVG", loadavg)
        cpu_max = tmp_path / "cpu.max"
        if quota is not None:
            cpu_max.write_text(quota + "\n")
        monkeypatch.setattr(threads, "CGROUP_CPU_MAX", cpu_max)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    return make


def test_a_quiet_machine_gets_a_thread_per_core_up_to_four(machine):
    machine(cores=2)
    assert threads.default_threads() == 2
    machine(cores=16)
    assert threads.default_threads() == threads.MAX_DEFAULT_THREADS == 4


def test_busy_cores_are_left_alone(machine):
    machine(cores=2, load=1.0)  # a build on one core for the last minute
    assert threads.default_threads() == 1
    machine(cores=4, load=0.1, runnable=3)  # two jobs that just started: the load average lags
    assert threads.default_threads() == 2
    machine(cores=2, load=7.5)  # busier than the machine: still one thread
    assert threads.default_threads() == 1


def test_the_load_of_a_shared_host_counts_for_our_share_of_it(machine):
    machine(cores=4, cpus=64, load=32.0)  # 4 of 64 CPUs, half the host busy: about 2 of ours
    assert threads.default_threads() == 2


def test_a_cgroup_quota_caps_the_cores(machine):
    machine(cores=16, quota="200000 100000")  # 2 CPUs' worth of time
    assert threads.usable_cores() == 2 and threads.default_threads() == 2
    machine(cores=3, quota="max 100000")
    assert threads.usable_cores() == 3


def test_the_setting_and_omp_num_threads_win(machine, monkeypatch):
    machine(cores=8, load=7.0)
    assert threads.threads_for(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert threads.threads_for(None) == 6


def probe(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment.update(env, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)
    return done.stdout.strip()


def test_the_cli_makes_idle_openmp_threads_sleep_before_torch_loads():
    code = ("import os, sys\nsys.argv = ['dcode', '--version']\nfrom dcode.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    print(os.environ.get('OMP_WAIT_POLICY'))")
    assert probe(code).splitlines()[-1] == "PASSIVE"
    assert probe(code, OMP_WAIT_POLICY="ACTIVE").splitlines()[-1] == "ACTIVE"  # the user's choice stands
    late = "import os, torch\nfrom dcode.model.threads import quiet_waiting\nquiet_waiting()\nprint(os.environ.get('OMP_WAIT_POLICY'))"
    assert probe(late) == "None"  # too late to matter once torch is loaded: left alone


def test_use_threads_sets_torchs_threads():
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.use_threads(1) == 1 and torch.get_num_threads() == 1
        assert threads.use_threads(3) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
