"""What the web app does, as plain methods the API routes and the pages both call; each calls the same
library function as the CLI (ingest, audit, train, explain, triage, the readers' kappa).

Files live under the data folder with server-chosen names:

    DATA_DIR/medlens.db   queue.db   datasets/<id>/   runs/<name>/   studies/<run id>/<uuid><suffix>
    audits/<dataset id>/  explanations/<run id>/  worklists/  logs/
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from medlens.errors import MedlensError
from medlens.serving.auth import ensure_token
from medlens.serving.db import AuditLog, Job, Run, database_url, make_engine, session_factory
from medlens.serving.jobs import QueueConfig, make_huey, recover
from medlens.serving.params import MAX_ID
from medlens.serving.service_common import RUN_NAME, NotFound, _id
from medlens.serving.service_datasets import DatasetsMixin
from medlens.serving.service_runs import RunsMixin
from medlens.serving.service_studies import StudiesMixin
from medlens.serving.settings import ServeSettings, open_database

__all__ = ["MAX_ID", "RUN_NAME", "NotFound", "ServeSettings", "Service"]


class Service(RunsMixin, DatasetsMixin, StudiesMixin):
    """The state of one server: database, job queue, loaded models (cached per run)."""

    def __init__(self, settings: ServeSettings) -> None:
        settings.check()  # a bad option is one line before anything is written
        self.settings = settings
        self.data = Path(settings.data_dir).resolve()
        self.db_url = database_url(self.data, settings.db_url)
        if settings.db_url:  # a database elsewhere: reached before a folder is made here
            open_database(self.db_url, settings.db_url)
        for sub in ("datasets", "runs", "studies", "audits", "explanations", "worklists", "logs", "uploads"):
            (self.data / sub).mkdir(parents=True, exist_ok=True)
        if not settings.db_url:
            open_database(self.db_url, None)
        self.engine = make_engine(self.db_url)
        self.Session = session_factory(self.engine)
        self.huey = make_huey(
            QueueConfig(self.data, self.db_url, settings.queue_url, immediate=settings.immediate_jobs)
        )
        with self.Session() as db:
            #: the token made at first start, to print once (None: it existed, or MEDLENS_API_TOKEN gives it)
            self.first_token = ensure_token(db)
        self._models: dict[int, Any] = {}
        self._model_lock = threading.Lock()
        self._predict_lock = threading.Lock()

    # -- jobs ---------------------------------------------------------------------------------------------
    def job(self, job_id: int) -> dict[str, Any]:
        job_id = _id(job_id, "job")
        with self.Session() as db:
            job = db.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            if job.state == "running":
                recover(db, self.huey, [job_id])
                db.refresh(job)
            return {
                "id": job.id,
                "kind": job.kind,
                "state": job.state,
                "progress": job.progress or {},
                "error": job.error,
                "run": job.run_id,
                "dataset": job.dataset_id,
                "created": job.created.isoformat(),
                "finished": job.finished.isoformat() if job.finished else None,
            }

    def list_jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.Session() as db:
            ids = db.execute(select(Job.id).order_by(Job.id.desc()).limit(limit)).scalars().all()
        return [self.job(i) for i in ids]

    def cancel(self, job_id: int, actor: str) -> dict[str, Any]:
        job_id = _id(job_id, "job")
        with self.Session() as db:
            job = db.get(Job, job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            if job.state in ("done", "failed", "cancelled"):
                raise MedlensError(f"job {job_id} is already {job.state}; nothing to cancel")
            job.cancel_requested = 1
            if job.state == "queued":
                job.state = "cancelled"
                job.progress = {"stage": "cancelled"}
            db.add(AuditLog(actor=actor, action="cancel", target=f"job {job_id}"))
            db.commit()
        return self.job(job_id)

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        """Who did what, when: the newest entries first."""
        with self.Session() as db:
            rows = db.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).scalars().all()
            return [
                {
                    "id": r.id,
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "at": r.created.isoformat(),
                }
                for r in rows
            ]

    def recover(self) -> list[int]:
        with self.Session() as db:
            return recover(db, self.huey)

    # -- helpers ------------------------------------------------------------------------------------------
    def _run(self, run_id: int) -> Run:
        run_id = _id(run_id, "run")
        with self.Session() as db:
            run = db.get(Run, run_id)
        if run is None:  # a run folder copied in since the last look
            self.scan_runs()
            with self.Session() as db:
                run = db.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist; GET /api/runs lists the runs")
        return run

    def _model(self, run: Run):
        from medlens.models.checkpoint import load_model

        if not (Path(run.path) / "model.pt").is_file():
            raise MedlensError(f"run {run.id} ({run.name}) has no model yet; wait for its training job")
        with self._model_lock:
            key = (Path(run.path) / "model.pt").stat().st_mtime_ns
            cached = self._models.get(run.id)
            if cached is None or cached[0] != key:
                cached = (key, load_model(run.path))
                self._models[run.id] = cached
            return cached[1]

    def _run_json(self, r: Run) -> dict[str, Any]:
        return {
            "id": r.id,
            "name": r.name,
            "task": r.task,
            "model": r.model,
            "created": r.created.isoformat(),
            "metrics": r.metrics or {},
            "ready": (Path(r.path) / "model.pt").is_file(),
        }

    def close(self) -> None:
        self.engine.dispose()
