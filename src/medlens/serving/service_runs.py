"""The Service's runs: listing and registering run folders, a run's summary and files, starting
training and the jobs on a run (evaluate, calibrate, triage)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from medlens.errors import MedlensError
from medlens.serving.db import AuditLog, Dataset, Job, Run
from medlens.serving.jobs import enqueue, register_run
from medlens.serving.params import PATH_FIELDS, allowed_path, check_fields, check_training
from medlens.serving.service_common import RUN_NAME, NotFound, _id, _inside


class RunsMixin:
    """Methods of :class:`~medlens.serving.service.Service` (its settings, data folder, database)."""

    # -- runs ---------------------------------------------------------------------------------------------
    def scan_runs(self) -> None:
        """Register run directories found under DATA_DIR/runs (copied there from the CLI, or finished)."""
        with self.Session() as db:
            known = {r.name for r in db.execute(select(Run)).scalars()}
            for folder in sorted((self.data / "runs").iterdir()):
                if folder.is_dir() and (folder / "model.pt").is_file() and folder.name not in known:
                    register_run(db, folder)

    def list_runs(self) -> list[dict[str, Any]]:
        self.scan_runs()
        with self.Session() as db:
            rows = db.execute(select(Run).order_by(Run.id)).scalars().all()
            return [self._run_json(r) for r in rows]

    def run_summary(self, run_id: int) -> dict[str, Any]:
        import json

        run = self._run(run_id)
        path = Path(run.path) / "summary.json"
        if not path.is_file():
            raise NotFound(f"run {run_id} has no summary.json yet (is it still training?)")
        return json.loads(path.read_text())

    def run_file(self, run_id: int, name: str) -> Path:
        """A file of a run's folder by a relative name (report.html, figures/x.png); never outside it."""
        run = self._run(run_id)
        return _inside(Path(run.path), name, f"run {run_id}")

    def start_training(self, dataset_id: int, options: dict[str, Any], actor: str) -> dict[str, int]:
        dataset_id = _id(dataset_id, "dataset")
        options = dict(options)
        name = str(options.pop("name", "") or "")
        options, checked = check_training(options)  # refuse bad values before anything is stored
        with self.Session() as db:
            dataset = db.get(Dataset, dataset_id)
            if dataset is None:
                raise NotFound(f"dataset {dataset_id} does not exist; upload one first (POST /api/datasets)")
            taken = self._run_name_taken
            if not name:  # a default name is never taken (two runs started in one second)
                stem = name = f"run-{datetime.now():%Y%m%d-%H%M%S}-{dataset_id}"
                count = 1
                while taken(db, name):
                    count += 1
                    name = f"{stem}-{count}"
            if not RUN_NAME.match(name):
                raise MedlensError(
                    f"run name {name!r} must be 1-80 letters, digits, '_', '.' or '-' (starting with a "
                    "letter or digit)"
                )
            if taken(db, name):
                raise MedlensError(f"a run named {name!r} exists already; choose another name")
            run = Run(
                name=name,
                path=str(self.data / "runs" / name),
                task=checked.task,
                model=checked.model,  # the task's default when none was given
                dataset_id=dataset_id,
            )
            db.add(run)
            db.flush()
            job = Job(kind="train", params=options, run_id=run.id, dataset_id=dataset_id)
            db.add(job)
            db.add(AuditLog(actor=actor, action="train", target=f"run {name} on dataset {dataset_id}"))
            db.commit()
            job_id, run_id = job.id, run.id
        enqueue(self.huey, job_id)
        return {"job": job_id, "run": run_id}

    def _run_name_taken(self, db, name: str) -> bool:
        found = db.execute(select(Run).where(Run.name == name)).scalar_one_or_none()
        return found is not None or (self.data / "runs" / name).exists()

    def start_job(self, kind: str, run_id: int, params: dict[str, Any], actor: str) -> int:
        """Queue evaluate / calibrate / triage on a run (triage takes ``dataset``; evaluate may).

        Every field is checked before anything is queued (:mod:`medlens.serving.params`): against the
        kind's schema, and each path against the allowed folders (``--allow-path`` and uploaded datasets).
        """
        self._run(run_id)
        params = check_fields(kind, dict(params))
        for name, what in PATH_FIELDS[kind].items():
            if name in params:
                params[name] = str(allowed_path(params[name], name, self.allowed_roots(), what))
        dataset_id = params.pop("dataset", None)
        with self.Session() as db:
            if dataset_id is not None and db.get(Dataset, dataset_id) is None:
                raise NotFound(f"dataset {dataset_id} does not exist; GET /api/datasets lists the datasets")
            job = Job(kind=kind, params=params, run_id=run_id, dataset_id=dataset_id)
            db.add(job)
            db.add(AuditLog(actor=actor, action=kind, target=f"run {run_id}"))
            db.commit()
            job_id = job.id
        enqueue(self.huey, job_id)
        return job_id

    def allowed_roots(self) -> list[Path]:
        """The folders a caller may name: the ``--allow-path`` folders and the uploaded datasets."""
        return [*(Path(r).resolve() for r in self.settings.allow_paths), self.data / "datasets"]
