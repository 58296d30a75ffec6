"""What the web app does, as plain methods the API routes and the pages both call; each calls the same
library function as the CLI (ingest, audit, train, explain, triage, the readers' kappa).

Files live under the data folder with server-chosen names:

    DATA_DIR/medlens.db   queue.db   datasets/<id>/   runs/<name>/   studies/<run id>/<uuid><suffix>
    audits/<dataset id>/  explanations/<run id>/  worklists/  logs/
"""

from __future__ import annotations

import re
import shutil
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from medlens.errors import MedlensError
from medlens.serving.auth import ensure_token
from medlens.serving.db import (
    AuditLog,
    Dataset,
    Job,
    Prediction,
    Read,
    Run,
    Study,
    database_url,
    make_engine,
    session_factory,
)
from medlens.serving.jobs import QueueConfig, enqueue, make_huey, recover, register_run
from medlens.serving.params import (
    MAX_ID,
    PATH_FIELDS,
    Refused,
    allowed_path,
    check_fields,
    check_training,
    path_exists,
    user_path,
)
from medlens.serving.settings import ServeSettings, open_database
from medlens.serving.stored import check_referral, check_study_time, guarded_finding, study_record
from medlens.serving.uploads import UploadRejected, safe_extract, save_upload, suffix_of

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class NotFound(MedlensError):
    """A row the caller named does not exist (HTTP 404)."""


def _id(value: int, what: str) -> int:
    """A row id from a caller (a page's form or path): a database integer, or NotFound."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise NotFound(f"{what} {value!r} does not exist") from None
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"{what} {value} does not exist")
    return value


class Service:
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

    # -- datasets -----------------------------------------------------------------------------------------
    def add_dataset_zip(self, stream, filename: str, actor: str) -> dict[str, Any]:
        if suffix_of(filename) != ".zip":
            raise UploadRejected(
                f"dataset upload {filename!r} is not a .zip; zip the folder (class folders, kaggle_3m "
                "pairs, NIfTI imagesTr/labelsTr, DICOM) and upload that",
                status=415,
            )
        limits = self.settings.limits
        tmp = save_upload(
            stream, self.data / "uploads", suffix=".zip", limit=limits.max_upload_bytes, name=filename
        )
        with self.Session() as db:
            dataset = Dataset(name=Path(filename.replace("\\", "/")).name[:200], path="", source="upload")
            db.add(dataset)
            db.flush()
            folder = self.data / "datasets" / str(dataset.id)
            try:
                files = safe_extract(tmp, folder, limits, name=filename)
                if not files:
                    shutil.rmtree(folder, ignore_errors=True)
                    raise UploadRejected(
                        f"dataset upload {filename!r} holds no files; zip the dataset's folder", status=422
                    )
            except Exception:
                db.rollback()
                raise
            finally:
                tmp.unlink(missing_ok=True)
            dataset.path = str(_data_root(folder))
            dataset.n_images = _count_images(files)
            db.commit()
            dataset_id = dataset.id
        return self._after_dataset(dataset_id, actor)

    def add_dataset_path(self, path: str, actor: str) -> dict[str, Any]:
        roots = [Path(r).resolve() for r in self.settings.allow_paths]
        resolved = user_path(path, "path")
        if not roots or not any(resolved.is_relative_to(r) for r in roots):
            raise Refused(
                f"{path} is not under an allowed root; start the server with --allow-path DIR to register "
                "folders from DIR",
                status=403,
            )
        if not path_exists(resolved):
            raise NotFound(f"{path} does not exist")
        files = [f for f in resolved.rglob("*") if f.is_file()] if resolved.is_dir() else [resolved]
        with self.Session() as db:
            dataset = Dataset(name=resolved.name[:200], path=str(resolved), source="path")
            dataset.n_images = _count_images(files)
            db.add(dataset)
            db.commit()
            dataset_id = dataset.id
        return self._after_dataset(dataset_id, actor)

    def _after_dataset(self, dataset_id: int, actor: str) -> dict[str, Any]:
        with self.Session() as db:
            dataset = db.get(Dataset, dataset_id)
            job = Job(kind="audit", dataset_id=dataset_id)
            db.add(job)
            db.flush()
            dataset.audit_job = job.id
            db.add(AuditLog(actor=actor, action="dataset", target=f"dataset {dataset_id}: {dataset.name}"))
            db.commit()
            job_id, n = job.id, dataset.n_images
        enqueue(self.huey, job_id)
        return {"id": dataset_id, "n_images": n, "audit_job": job_id}

    def list_datasets(self) -> list[dict[str, Any]]:
        with self.Session() as db:
            rows = db.execute(select(Dataset).order_by(Dataset.id)).scalars().all()
            return [
                {
                    "id": d.id,
                    "name": d.name,
                    "source": d.source,
                    "n_images": d.n_images,
                    "audit_job": d.audit_job,
                    "created": d.created.isoformat(),
                    "audit_report": (self.data / "audits" / str(d.id) / "audit.html").is_file(),
                }
                for d in rows
            ]

    def audit_report(self, dataset_id: int) -> Path:
        path = self.data / "audits" / str(_id(dataset_id, "dataset")) / "audit.html"
        if not path.is_file():
            raise NotFound(f"dataset {dataset_id} has no audit report yet")
        return path

    # -- studies, predictions, the worklist ---------------------------------------------------------------
    def predict(
        self,
        run_id: int,
        stream,
        filename: str,
        *,
        patient_id: str | None = None,
        referral_priority: str | None = None,
        study_time: str | None = None,
        explain: bool = True,
        actor: str = "api",
    ) -> dict[str, Any]:
        """Save one uploaded study, explain it with the run, add it to the run's worklist."""
        from medlens.explaining.inputs import Study as InputStudy
        from medlens.explaining.run import explain_studies

        run = self._run(run_id)
        # what the worklist will weigh is checked before any work, so that nothing it cannot use is stored
        study_time = check_study_time(study_time)
        referral_priority = check_referral(referral_priority)
        loaded = self._model(run)
        folder = self.data / "studies" / str(run.id)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = suffix_of(filename)
        limits = self.settings.limits
        if suffix == ".zip":  # a DICOM series: its files, zipped
            archive = save_upload(stream, folder, suffix=".zip", limit=limits.max_upload_bytes, name=filename)
            try:
                if not safe_extract(archive, archive.with_suffix(""), limits, name=filename):
                    raise UploadRejected(
                        f"{filename!r} holds no files; zip the series' DICOM files", status=422
                    )
            finally:
                archive.unlink(missing_ok=True)
            path = _data_root(archive.with_suffix(""))
        else:
            path = save_upload(stream, folder, suffix=suffix, limit=limits.max_image_bytes, name=filename)
        with self.Session() as db:
            study = Study(
                run_id=run.id,
                path=str(path),
                original_name=Path(str(filename).replace("\\", "/")).name[:300] or "upload",
                patient_id=patient_id,
                referral_priority=referral_priority,
                study_time=study_time,
            )
            db.add(study)
            db.commit()
            study_id = study.id
        out = self.data / "explanations" / str(run.id)
        with self._predict_lock:  # one model, one Grad-CAM hook at a time
            result = explain_studies(
                loaded,
                Path(run.path),
                [InputStudy(str(study_id), str(path))],
                out,
                write_png=explain,
                progress=False,
            )
        [record] = result["cases"]
        if "error" in record:  # the user's name for the file, never the server's path
            record["error"] = str(record["error"]).replace(str(path), Path(filename).name or "upload")
        with self.Session() as db:
            db.add(
                Prediction(
                    study_id=study_id, run_id=run.id, prediction=record.get("prediction"), record=record
                )
            )
            db.add(AuditLog(actor=actor, action="predict", target=f"study {study_id} on run {run.id}"))
            db.commit()
        if "error" in record:
            raise UploadRejected(
                f"cannot read the uploaded study {filename!r}: {record['error']}; upload an image, DICOM "
                "or NIfTI file",
                status=422,
            )
        png = record.get("png")
        ood = record.get("ood") or {}
        return {
            "study": study_id,
            "prediction": record.get("prediction"),
            "probabilities": record.get("probabilities"),
            "calibrated": bool(result.get("calibrated")),
            "ood": {"score": ood.get("score"), "flag": bool(ood.get("flag"))} if ood else None,
            "explanation_png": f"/api/explanations/{run.id}/{png}" if png else None,
            "rationale": record.get("rationale"),
        }

    def explanation_file(self, run_id: int, name: str) -> Path:
        return _inside(self.data / "explanations" / str(_id(run_id, "run")), name, "explanations")

    def worklist(self, run_id: int) -> list[dict[str, Any]]:
        """The run's studies ranked by the triage formula (default weights), with each row's status."""
        from medlens.tasks.registry import get_task
        from medlens.triaging.config import TriageConfig
        from medlens.triaging.worklist import build_worklist

        run = self._run(run_id)
        loaded = self._model(run)
        task = get_task(loaded.spec.task)
        cfg = TriageConfig()
        with self.Session() as db:
            rows = db.execute(
                select(Study, Prediction)
                .join(Prediction, Prediction.study_id == Study.id)
                .where(Study.run_id == run.id)
                .order_by(Study.id)
            ).all()
            reads = select(Read).join(Study, Study.id == Read.study_id).where(Study.run_id == run.id)
            read = {r.study_id: r for r in db.execute(reads.order_by(Read.id)).scalars()}  # the last read
        records, state, notes = [], {}, {}
        for study, pred in rows:
            record, notes[str(study.id)] = study_record(study, pred, cfg)  # a bad stored field: shown
            if pred.record.get("png"):
                record["explain_png"] = f"/api/explanations/{run.id}/{pred.record['png']}"
            records.append(record)
            if study.id in read:
                r = read[study.id]
                state[str(study.id)] = {
                    "status": "read",
                    "read_by": r.reader,
                    "read_at": r.created.isoformat(),
                    "finding": r.finding,
                }
        finding = guarded_finding(task, notes)
        ranked = build_worklist(records, cfg, finding, state=state)
        for r in ranked:
            r["reason"] = "; ".join([r["reason"], *notes.get(str(r["study"]), [])])
        return [
            {
                "study": int(r["study"]),
                "rank": r["rank"],
                "priority": r["priority"],
                "reason": r["reason"],
                "status": r["status"],
                "input": r["input"],
                "prediction": r.get("prediction"),
                "explanation_png": r.get("explain_png"),
                "read_by": r.get("read_by"),
                "finding": r.get("finding"),
            }
            for r in ranked
        ]

    def mark_read(self, study_id: int, reader: str, finding: str, actor: str) -> dict[str, Any]:
        """Record a read: ``finding`` is "agree", "disagree" or a class name (the reader's own label)."""
        study_id = _id(study_id, "study")
        reader, finding = str(reader or "").strip(), str(finding or "").strip()
        if not reader or len(reader) > 120:
            raise MedlensError("give the reader's name (1-120 characters)")
        with self.Session() as db:
            study = db.get(Study, study_id)
            pred = db.execute(select(Prediction).where(Prediction.study_id == study_id)).scalar_one_or_none()
            if study is None or pred is None:
                raise NotFound(f"study {study_id} is not on any worklist")
            classes = list((pred.record.get("probabilities") or {}).keys())
            model = pred.prediction
            if model is None:  # an unreadable study: the read is recorded, there is no call to agree with
                label, agreement = (finding if finding in classes else None), None
            elif finding == "agree":
                label, agreement = model, 1
            elif finding == "disagree":
                others = [c for c in classes if c != model]
                label, agreement = (others[0] if len(others) == 1 else None), 0
            elif finding in classes:
                label, agreement = finding, int(finding == model)
            else:
                choices = ", ".join(["agree", "disagree", *classes])
                raise MedlensError(f"finding must be one of {choices}; got {finding!r}")
            db.add(Read(study_id=study_id, reader=reader, finding=finding, label=label, agreement=agreement))
            db.add(AuditLog(actor=actor, action="read", target=f"study {study_id} by {reader}: {finding}"))
            db.commit()
        return {
            "study": study_id,
            "reader": reader,
            "finding": finding,
            "label": label,
            "agreement": agreement,
        }

    def agreement(self, run_id: int) -> dict[str, Any]:
        """Reader-vs-model agreement on the run's read studies (Cohen's kappa per reader and overall)."""
        from medlens.evaluation.readers import model_agreement

        self._run(run_id)
        with self.Session() as db:
            rows = db.execute(
                select(Read, Prediction)
                .join(Prediction, Prediction.study_id == Read.study_id)
                .where(Prediction.run_id == run_id)
                .order_by(Read.id)
            ).all()
        classes: list[str] = []
        reads = []
        for read, pred in rows:
            classes = classes or list((pred.record.get("probabilities") or {}).keys())
            if read.label is not None and pred.prediction is not None:
                reads.append((read.reader, pred.prediction, read.label))
        return model_agreement(reads, classes)

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


def _inside(base: Path, name: str, what: str) -> Path:
    """``base / name`` when it is a file inside ``base`` (no traversal, no absolute names)."""
    base = base.resolve()
    if not name or "\x00" in name or name.startswith(("/", "\\")):
        raise NotFound(f"no such file in {what}")
    target = (base / name).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound(f"no such file in {what}")
    return target


def _data_root(folder: Path) -> Path:
    """The folder a dataset zip really holds: a single top-level folder is stepped into."""
    entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    while len(entries) == 1 and entries[0].is_dir():
        folder = entries[0]
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    return folder


def _count_images(files: list[Path]) -> int:
    from medlens.io.images import is_image_file

    return sum(1 for f in files if is_image_file(f) or f.name.endswith((".nii", ".nii.gz", ".npz")))
