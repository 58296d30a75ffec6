"""``medlens serve``: start the database, the job worker and the web server, and print the token once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.serving.service import ServeSettings, Service
from medlens.serving.settings import check_listen

DEMO_RUN = Path("medlens-demo") / "run"  # where `make demo` (medlens demo) writes its run


def serve(settings: ServeSettings, *, import_runs: list[Path] | None = None, echo=print) -> None:
    """Run the service until interrupted (Ctrl+C stops the worker too)."""
    import uvicorn

    from medlens.serving.app import create_app
    from medlens.serving.auth import TOKEN_ENV

    # every option is checked before anything is written or started: one line, no server traceback
    settings.check()
    check_listen(settings.host, settings.port)
    runs = list(import_runs or [])
    for run in runs:
        check_run(run)
    if not runs and (DEMO_RUN / "model.pt").is_file():
        runs.append(DEMO_RUN)  # `make demo` then `medlens serve` shows the demo run
    _cap_malloc_arenas()
    service = Service(settings)
    for run in runs:
        copy_run(run, service.data / "runs")
    service.scan_runs()
    token = service.first_token
    if token and not settings.no_auth:
        echo(f"API token (shown once; set {TOKEN_ENV} to choose your own): {token}")
    recovered = service.recover()
    if recovered:
        echo(f"jobs left running by a stopped worker, now resumed or marked failed: {recovered}")
    worker = None
    if settings.workers > 0:
        cmd = [sys.executable, "-m", "medlens.serving.worker", "--data-dir", str(service.data)]
        cmd += ["--workers", str(settings.workers), "--parent-pid", str(os.getpid())]
        if settings.db_url:
            cmd += ["--db", settings.db_url]
        if settings.queue_url:
            cmd += ["--queue", settings.queue_url]
        worker = subprocess.Popen(cmd, start_new_session=True)  # its own group: stopped as one
    echo(f"medlens serving {service.data} at http://{settings.host}:{settings.port}/ (API docs at /docs)")
    try:
        uvicorn.run(create_app(settings, service), host=settings.host, port=settings.port, log_level="info")
    finally:
        if worker is not None:  # (a server killed outright: the worker sees it and stops by itself)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)


def _cap_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas: the server answers from a pool of threads, and by default each thread
    gets its own arena that keeps freed image buffers, so the resident size grows with concurrency without
    any leak. Nothing happens off glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).mallopt(-8, arenas)  # M_ARENA_MAX


def check_run(run: Path) -> Path:
    """``run`` when it is a run folder (it holds model.pt).

    Raises:
        MedlensError: naming ``--run`` and the folder.
    """
    run = Path(run)
    if not (run / "model.pt").is_file():
        raise MedlensError(
            f"--run {run} is not a run folder (no model.pt); give a folder made by medlens train"
        )
    return run


def copy_run(run: Path, runs_dir: Path) -> Path:
    """Copy a CLI run folder into the service's runs (without its epoch checkpoints); once."""
    run = check_run(run)
    name = run.resolve().name
    if name == "run" and run.resolve().parent.name:  # medlens-demo/run -> medlens-demo
        name = run.resolve().parent.name
    target = runs_dir / name
    if not target.exists():
        tmp = runs_dir / f".{target.name}.copying"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(run, tmp, ignore=shutil.ignore_patterns("checkpoints", "*.partial"))
        if (run / "manifest.csv").is_file():  # its paths are relative to the run: re-anchor them at the copy
            Manifest.load(run / "manifest.csv").save(tmp / "manifest.csv")
        tmp.rename(target)
    return target
