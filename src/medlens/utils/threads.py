"""How many CPU threads medlens's processes give torch, so that training shares a busy machine gracefully.

Measured on the project's 2-core machine (``bench/bench_threads.py``, docs/benchmarks.md "Sharing the
machine"): beside one other busy program, cnn-small's training step with torch's default 2 threads kept
0.36x of its idle throughput (the two threads wait on each other whenever one of them waits for a core), and
no OpenMP waiting policy (PASSIVE, ACTIVE, a short spin) changed that; with 1 thread it kept 0.99x, 0.69x of
the 2-thread idle throughput. So medlens leaves one core to the rest of the machine: torch gets the physical
cores minus one (at least 1).

The count is fixed by the machine's core count, never by measuring its load: the thread count decides the
order of floating-point reductions, so a model must not depend on what else ran.

Environment:
    MEDLENS_THREADS: torch's intra-op thread count for medlens's commands (also ``medlens --threads N``).
    OMP_NUM_THREADS: when set (and no MEDLENS_THREADS / ``--threads``), medlens leaves torch's count alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medlens.errors import MedlensError

THREADS_ENV = "MEDLENS_THREADS"


def physical_cores() -> int:
    """Physical cores this process may run on: distinct (socket, core) pairs of /proc/cpuinfo, at most the
    CPUs of its affinity mask; the logical CPU count where /proc/cpuinfo says nothing."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return usable
    cores, socket = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            socket = value.strip()
        elif key.strip() == "core id":
            cores.add((socket, value.strip()))
    return min(len(cores), usable) if cores else usable


def default_threads() -> int:
    """medlens's fixed thread count: the physical cores minus one (one left to the rest of the machine)."""
    return max(1, physical_cores() - 1)


def requested_threads(value: int | str | None = None) -> int | None:
    """The thread count asked for: ``value`` (``--threads``), else ``MEDLENS_THREADS``, else None.

    Raises:
        MedlensError: not a whole number from 1 to 256.
    """
    source = "--threads"
    if value is None:
        value, source = os.environ.get(THREADS_ENV, "").strip() or None, THREADS_ENV
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= 256 or str(value).strip() != str(n):
        raise MedlensError(f"{source} must be a whole number of threads from 1 to 256, got {value!r}")
    return n


def chosen_threads(value: int | str | None = None) -> int | None:
    """The count medlens sets: the one asked for, else None where the user set ``OMP_NUM_THREADS`` (torch
    already follows it), else :func:`default_threads`."""
    n = requested_threads(value)
    if n is None and os.environ.get("OMP_NUM_THREADS", "").strip():
        return None
    return default_threads() if n is None else n


def apply_threads(value: int | str | None = None) -> int | None:
    """Set torch's intra-op thread count to :func:`chosen_threads` (and ``OMP_NUM_THREADS`` for the
    processes medlens starts); the count set, or None where the user's ``OMP_NUM_THREADS`` stands."""
    n = chosen_threads(value)
    if n is None:
        return None
    os.environ["OMP_NUM_THREADS"] = str(n)  # torch reads it when it loads
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
