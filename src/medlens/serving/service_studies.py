"""The Service's studies: one uploaded study predicted and explained, the run's worklist, a reader's
read and the readers' agreement with the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from medlens.errors import MedlensError
from medlens.serving.db import AuditLog, Prediction, Read, Study
from medlens.serving.service_common import NotFound, _data_root, _id, _inside
from medlens.serving.stored import check_referral, check_study_time, guarded_finding, study_record
from medlens.serving.uploads import UploadRejected, safe_extract, save_upload, suffix_of


class StudiesMixin:
    """Methods of :class:`~medlens.serving.service.Service` (its settings, data folder, database)."""

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
