"""Long work (audit, train, evaluate, calibrate, triage) as jobs in worker processes, through Huey.

A job is a row in the database (state, progress, error) and a Huey task carrying only its id. The worker
runs the same library function the CLI runs, and reports through :func:`medlens.utils.progress.listening`
into the row (stage, epoch, metrics, ETA) and a heartbeat. Cancelling sets a flag that the next progress
report turns into a stop (a queued job is cancelled at once).

Nothing is silently lost: :func:`recover` (at server and worker start, and whenever a running job is looked
at) finds jobs marked running whose worker process is gone. A training job is queued again to resume from its
last epoch checkpoint (up to three attempts); any other job is marked failed with the reason.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from medlens.errors import MedlensError
from medlens.io.guard import first_line
from medlens.serving.db import Dataset, Job, Run, make_engine, session_factory, utcnow
from medlens.serving.params import SCHEMAS, check_fields
from medlens.utils.progress import listening

TASK_NAME = "medlens.run_job"
MAX_ATTEMPTS = 3
PROGRESS_EVERY_S = 0.5


class JobCancelled(Exception):
    """Raised inside a job when its cancel flag is seen."""


@dataclass
class QueueConfig:
    """Where jobs wait: Huey's SQLite file in the data folder, Redis by URL, or ``immediate`` (tests: run
    in the calling process)."""

    data_dir: Path
    db_url: str
    queue_url: str | None = None
    immediate: bool = False


def make_huey(cfg: QueueConfig):
    """The Huey instance with the one task registered (the server enqueues, the worker consumes)."""
    from huey import MemoryHuey, RedisHuey, SqliteHuey

    if cfg.immediate:
        huey = MemoryHuey("medlens", immediate=True)
    elif cfg.queue_url and cfg.queue_url.startswith(("redis://", "rediss://")):
        huey = RedisHuey("medlens", url=cfg.queue_url)
    else:
        huey = SqliteHuey("medlens", filename=str(Path(cfg.data_dir) / "queue.db"))
    data_dir, db_url = str(cfg.data_dir), cfg.db_url

    @huey.task(name=TASK_NAME)
    def run_job_task(job_id: int) -> None:
        run_job(job_id, Path(data_dir), db_url)

    huey.run_job_task = run_job_task
    return huey


def enqueue(huey, job_id: int) -> None:
    huey.run_job_task(job_id)


# -- the worker side ---------------------------------------------------------------------------------------


def run_job(job_id: int, data_dir: Path, db_url: str, factory: sessionmaker | None = None) -> None:
    """Run one job to its end state (never raises: failures are written to the row)."""
    factory = factory or _factories.setdefault(db_url, session_factory(make_engine(db_url)))
    with factory() as db:
        job = db.get(Job, job_id)
        if job is None or job.state != "queued":
            return  # cancelled while queued, or already taken
        if job.cancel_requested:
            _finish(db, job, "cancelled")
            return
        job.state, job.pid, job.started = "running", os.getpid(), utcnow()
        job.attempts += 1
        job.heartbeat = utcnow()
        job.progress = {"stage": "starting"}
        db.commit()
        try:
            with listening(_Reporter(factory, job_id)):
                result = _dispatch(db, job, Path(data_dir))
            job.progress = {**(job.progress or {}), "stage": "done", **(result or {})}
            _finish(db, job, "done")
        except JobCancelled:
            db.rollback()
            _finish(db, db.get(Job, job_id), "cancelled")
        except MedlensError as err:
            db.rollback()
            _finish(db, db.get(Job, job_id), "failed", first_line(err))
        except Exception as err:
            db.rollback()
            log = Path(data_dir) / "logs" / f"job-{job_id}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc(), encoding="utf-8")
            # the message of an unexpected error may quote anything (a file's line, a server path): the
            # row, which callers read, names only its type and the log, which the operator reads
            _finish(
                db,
                db.get(Job, job_id),
                "failed",
                f"internal error {type(err).__name__} in job {job_id}; the server log logs/{log.name} has "
                "the details",
            )


_factories: dict[str, sessionmaker] = {}


class _Reporter:
    """The progress listener of one job: writes stage/epoch/metrics/ETA at most twice a second, and stops
    the job when its cancel flag is set."""

    def __init__(self, factory: sessionmaker, job_id: int) -> None:
        self.factory, self.job_id = factory, job_id
        self.t0 = time.monotonic()
        self.last = 0.0

    def __call__(self, stage: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and stage != "train":
            return
        self.last = now
        progress: dict[str, Any] = {"stage": stage}
        for key, value in info.items():
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                progress[key] = value
        if stage == "train" and info.get("epoch") and info.get("epochs"):
            done, total = int(info["epoch"]), int(info["epochs"])
            elapsed = now - self.t0
            progress["eta_s"] = round(elapsed / done * (total - done), 1) if done else None
        with self.factory() as db:
            job = db.get(Job, self.job_id)
            if job is None:
                return
            job.progress, job.heartbeat = progress, utcnow()
            db.commit()
            if job.cancel_requested:
                raise JobCancelled()


def _dispatch(db: Session, job: Job, data_dir: Path) -> dict[str, Any] | None:
    import medlens

    params = dict(job.params or {})
    if job.kind in SCHEMAS:  # checked when queued; again here for rows queued by an older server
        params = check_fields(job.kind, {**params, "dataset": job.dataset_id} if job.dataset_id else params)
        params.pop("dataset", None)
    if job.kind == "audit":
        dataset = db.get(Dataset, job.dataset_id)
        out = data_dir / "audits" / str(dataset.id)
        medlens.audit(dataset.path, out, progress=False)
        return {"report": str(out / "audit.html")}
    run = db.get(Run, job.run_id)
    if job.kind == "train":
        dataset = db.get(Dataset, job.dataset_id)
        partial = Path(run.path + ".partial")
        resume = bool(params.pop("resume", False)) and (partial / "checkpoints" / "last.ckpt").is_file()
        out = medlens.train(
            dataset.path, run.path, resume=resume, overwrite=not resume, progress=False, **params
        )
        register_run(db, Path(out), run)
        return {"run": run.name}
    if job.kind == "evaluate":
        if job.dataset_id is not None:
            params["data"] = db.get(Dataset, job.dataset_id).path
        medlens.evaluate(run.path, progress=False, **params)
        register_run(db, Path(run.path), run)
        return None
    if job.kind == "calibrate":
        medlens.calibrate(run.path, progress=False, **params)
        return None
    if job.kind == "triage":
        dataset = db.get(Dataset, job.dataset_id)
        out = data_dir / "worklists" / f"job-{job.id}"
        medlens.triage(run.path, [dataset.path], out, progress=False, **params)
        return {"worklist": str(out / "worklist.html")}
    raise MedlensError(f"unknown job kind {job.kind!r}")


def register_run(db: Session, run_dir: Path, row: Run | None = None) -> Run:
    """Create or refresh the row of a complete run directory (task, model, headline metrics)."""
    import json

    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if row is None:
        row = db.execute(select(Run).where(Run.name == run_dir.name)).scalar_one_or_none()
    if row is None:
        row = Run(name=run_dir.name, path=str(run_dir))
        db.add(row)
    row.task = summary.get("task") or row.task
    model = summary.get("model")
    row.model = (model.get("name") if isinstance(model, dict) else model) or row.model
    metrics = summary.get("metrics") or {}
    row.metrics = {
        k: (v.get("value") if isinstance(v, dict) else v)
        for k, v in metrics.items()
        if isinstance(v, (dict, int, float))
    }
    db.commit()
    return row


def _finish(db: Session, job: Job, state: str, error: str | None = None) -> None:
    job.state, job.error, job.finished = state, error, utcnow()
    if state != "done":
        job.progress = {**(job.progress or {}), "stage": state}
    db.commit()


# -- recovery ----------------------------------------------------------------------------------------------


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is gone for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ")[-1].split(" ")[0] != "Z"
    except OSError:
        return True


def recover(db: Session, huey, job_ids: list[int] | None = None) -> list[int]:
    """Resolve jobs marked running whose worker is gone: training is queued again to resume, the rest fail
    with the reason. Returns the ids touched."""
    query = select(Job).where(Job.state == "running")
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    touched = []
    for job in db.execute(query).scalars():
        if pid_alive(job.pid):
            continue
        touched.append(job.id)
        if job.cancel_requested:
            _finish(db, job, "cancelled")
        elif job.kind == "train" and job.attempts < MAX_ATTEMPTS:
            job.state, job.pid = "queued", None
            job.params = {**(job.params or {}), "resume": True}
            job.progress = {"stage": "queued to resume: the worker stopped during training"}
            db.commit()
            enqueue(huey, job.id)
        else:
            _finish(
                db,
                job,
                "failed",
                f"the worker process (pid {job.pid}) stopped during the job; start the job again",
            )
    return touched
