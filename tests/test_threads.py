"""The thread policy of medlens's processes (medlens.utils.threads): a fixed count, the physical cores minus
one, unless the user chose one (``--threads``, ``MEDLENS_THREADS``, ``OMP_NUM_THREADS``). No timing here: the
effect is measured by bench/bench_threads.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medlens.errors import MedlensError
from medlens.serving import worker
from medlens.utils import threads

SRC = str(Path(__file__).resolve().parents[1] / "src")
OMP_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MEDLENS_THREADS")
# a fresh process runs a trivial command through the CLI's app, then reports torch's thread count
PROBE = (
    "import sys\n"
    "from typer.testing import CliRunner\n"
    "from medlens.cli import app\n"
    "result = CliRunner().invoke(app, sys.argv[1:])\n"
    "import torch\n"
    "print('exit', result.exit_code, 'threads', torch.get_num_threads())\n"
    "print(result.output)\n"
)


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    clean.update(env, PYTHONPATH=SRC)
    cmd = [sys.executable, "-c", PROBE, *args]
    return subprocess.run(cmd, env=clean, capture_output=True, text=True, timeout=120)


def test_cli_uses_physical_cores_minus_one():
    done = _run(["models"])
    assert done.returncode == 0, done.stderr
    assert f"exit 0 threads {max(1, threads.physical_cores() - 1)}" in done.stdout


def test_users_omp_num_threads_is_kept():
    done = _run(["models"], OMP_NUM_THREADS="2")  # torch caps its count at the CPUs it sees
    assert "exit 0 threads 2" in done.stdout, done.stderr


def test_threads_option_wins_over_the_env():
    done = _run(["--threads", "2", "models"], MEDLENS_THREADS="3", OMP_NUM_THREADS="1")
    assert "exit 0 threads 2" in done.stdout, done.stderr


def test_bad_thread_count_is_one_error_line():
    clean = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    cmd = [sys.executable, "-m", "medlens", "models"]
    env = {**clean, "PYTHONPATH": SRC, "MEDLENS_THREADS": "two"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    expected = "error: MEDLENS_THREADS must be a whole number of threads from 1 to 256, got 'two'"
    assert done.stderr.strip() == expected


def test_chosen_threads(monkeypatch):
    for name in OMP_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "physical_cores", lambda: 2)
    assert threads.chosen_threads() == 1  # the 2-core machine: one core left to the rest
    monkeypatch.setattr(threads, "physical_cores", lambda: 1)
    assert threads.chosen_threads() == 1
    monkeypatch.setattr(threads, "physical_cores", lambda: 8)
    assert threads.chosen_threads() == 7
    assert threads.chosen_threads("3") == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.chosen_threads() is None  # torch follows the user's OMP_NUM_THREADS
    monkeypatch.setenv("MEDLENS_THREADS", "2")
    assert threads.chosen_threads() == 2
    assert threads.chosen_threads(1) == 1  # --threads wins


def test_requested_threads_refuses_bad_counts(monkeypatch):
    for bad in ("0", "1.5", "-3", "999", " "):
        with pytest.raises(MedlensError, match="--threads must be a whole number"):
            threads.requested_threads(bad)
    monkeypatch.setenv("MEDLENS_THREADS", "lots")
    with pytest.raises(MedlensError, match="MEDLENS_THREADS must be a whole number"):
        threads.requested_threads()


def test_physical_cores_is_at_least_one_and_at_most_usable():
    usable = len(os.sched_getaffinity(0))
    assert 1 <= threads.physical_cores() <= usable


def test_serve_worker_shares_threads_between_its_job_processes(monkeypatch):
    for name in OMP_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(worker, "default_threads", lambda: 7)
    worker._share_cores(1)
    assert os.environ["OMP_NUM_THREADS"] == "7"
    monkeypatch.delenv("OMP_NUM_THREADS")
    worker._share_cores(2)
    assert os.environ["OMP_NUM_THREADS"] == "3"
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # the user's count is the total
    worker._share_cores(4)
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("MEDLENS_THREADS", "3")
    worker._share_cores(4)
    assert os.environ["OMP_NUM_THREADS"] == "1"
