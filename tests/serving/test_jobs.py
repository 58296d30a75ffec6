"""Jobs in a real worker process: a worker killed during training leaves the job resumed from its last epoch
checkpoint (never "running" forever), other jobs left running are marked failed with the reason, and a
queued job can be cancelled."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from medlens.serving.db import Job
from medlens.serving.service import ServeSettings, Service


def _worker(data_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medlens.serving.worker", "--data-dir", str(data_dir)],
        start_new_session=True,  # its own process group: killed with its Huey worker processes
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(service: Service, job_id: int, until, timeout: float = 240.0) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        job = service.job(job_id)
        if until(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not get there in {timeout} s: {service.job(job_id)}")


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_a_worker_killed_during_training_resumes_the_job(tmp_path, make_folders):
    data = make_folders(tmp_path / "src", n_per_class=16, size=32)
    service = Service(ServeSettings(data_dir=tmp_path / "d", allow_paths=[tmp_path / "src"]))
    dataset = service.add_dataset_path(str(data), actor="test")
    started = service.start_training(
        dataset["id"],
        {"model": "cnn-small", "epochs": 40, "image_size": 32, "batch_size": 8, "patience": 100, "name": "r"},
        actor="test",
    )
    worker = _worker(service.data)
    try:
        _wait(service, dataset["audit_job"], lambda j: j["state"] == "done")
        job = _wait(service, started["job"], lambda j: (j["progress"].get("epoch") or 0) >= 3)
        assert job["state"] == "running" and job["progress"]["epochs"] == 40 and "eta_s" in job["progress"]
    finally:
        _kill_group(worker)
    # the worker is gone (its Huey process dies a moment after the signal): looking at the job resolves it,
    # queued again to resume
    job = _wait(service, started["job"], lambda j: j["state"] != "running", timeout=30)
    assert job["state"] == "queued" and "resume" in job["progress"]["stage"], job
    worker = _worker(service.data)
    try:
        job = _wait(service, started["job"], lambda j: j["state"] in ("done", "failed"), timeout=400)
    finally:
        _kill_group(worker)
    assert job["state"] == "done", job
    history = pd.read_csv(service.data / "runs" / "r" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, len(history) + 1))  # continued, not restarted
    with service.Session() as db:
        assert db.get(Job, started["job"]).attempts == 2


def test_a_non_training_job_left_running_by_a_dead_worker_fails_with_the_reason(tmp_path):
    service = Service(ServeSettings(data_dir=tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with service.Session() as db:
        job = Job(kind="audit", state="running", pid=dead.pid, attempts=1)
        db.add(job)
        db.commit()
        job_id = job.id
    assert service.recover() == [job_id]
    job = service.job(job_id)
    assert (
        job["state"] == "failed"
        and f"pid {dead.pid}" in job["error"]
        and "start the job again" in job["error"]
    )
    assert service.recover() == []  # never touched twice


def test_a_queued_job_is_cancelled_and_never_runs(tmp_path, make_folders):
    data = make_folders(tmp_path / "src", n_per_class=4, size=16)
    service = Service(ServeSettings(data_dir=tmp_path / "d", allow_paths=[tmp_path]))
    dataset = service.add_dataset_path(str(data), actor="test")  # queued: no worker here
    job = service.cancel(dataset["audit_job"], actor="test")
    assert job["state"] == "cancelled"
    from medlens.serving.jobs import run_job

    run_job(dataset["audit_job"], service.data, service.db_url)  # a worker taking it later does nothing
    assert service.job(dataset["audit_job"])["state"] == "cancelled"
    assert not (service.data / "audits" / str(dataset["id"])).exists()


@pytest.mark.slow
def test_workers_stop_when_the_server_is_killed(tmp_path):
    """`medlens serve` killed outright (no cleanup runs) must not leave its job worker running."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MEDLENS_API_TOKEN": "kill-token"}
    server = subprocess.Popen(
        [sys.executable, "-m", "medlens", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )

    def workers() -> list[int]:
        out = subprocess.run(
            ["pgrep", "-f", f"medlens.serving.worker --data-dir {tmp_path / 'd'}"],
            capture_output=True,
            text=True,
        )
        return [int(p) for p in out.stdout.split()]

    t0 = time.monotonic()
    while not workers() and time.monotonic() - t0 < 60:
        time.sleep(0.3)
    assert workers(), "the server started no worker"
    server.kill()
    server.wait(timeout=30)
    t0 = time.monotonic()
    while workers() and time.monotonic() - t0 < 30:
        time.sleep(0.5)
    assert not workers()
