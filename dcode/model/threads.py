"""How many CPU threads torch runs a model on, and how they wait: as many as there are cores free
now, since a pass is as slow as its slowest thread and a thread sharing its core with another
busy process holds every pass up; and waiting threads sleep. No torch at import:
`quiet_waiting` must run before torch loads."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

MAX_DEFAULT_THREADS = 4  # the small models gain nothing past this on CPU
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
LOADAVG = Path("/proc/loadavg")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota
    (a container limited to 2 CPUs of a 64-core host)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def busy_cores(cores: int) -> float:
    """Cores other processes keep busy: the larger of the last minute's load average and the
    tasks runnable right now besides this one (the load average lags a job that just started),
    scaled to this process's share of the machine (the kernel counts every CPU)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    try:
        runnable = int(LOADAVG.read_text().split()[3].split("/")[0]) - 1  # less this process
    except (OSError, ValueError, IndexError):
        runnable = 0
    share = cores / max(cores, os.cpu_count() or cores)
    return max(load, runnable) * share


def default_threads() -> int:
    """One thread per core nobody else is using, at least one, at most MAX_DEFAULT_THREADS;
    `OMP_NUM_THREADS`, when set, is the user's choice."""
    explicit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    cores = usable_cores()
    free = cores - round(busy_cores(cores))
    return max(1, min(MAX_DEFAULT_THREADS, free))


def threads_for(setting: int | None) -> int:
    """The `threads` setting (--threads, DCODE_THREADS, config), else `default_threads()`."""
    return setting or default_threads()


def quiet_waiting() -> None:
    """Make OpenMP's idle threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE) unless the
    user chose otherwise: a spinning thread takes a core from whatever else runs, the model's own
    threads included (`dcode bench contention`, dcode-small on 2 threads of a busy 2-core machine:
    83 s quiet and 313 s beside a busy core spinning, 14 s and 20 s sleeping). OpenMP reads it
    once, when torch loads it."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def use_threads(setting: int | None) -> int:
    """Run torch's CPU work on `threads_for(setting)` threads (imports torch); returns how many."""
    import torch

    threads = threads_for(setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
