"""The Service's datasets: an uploaded zip or an allowed folder registered (then audited), the list,
the audit report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select

from medlens.serving.db import AuditLog, Dataset, Job
from medlens.serving.jobs import enqueue
from medlens.serving.params import Refused, path_exists, user_path
from medlens.serving.service_common import NotFound, _count_images, _data_root, _id
from medlens.serving.uploads import UploadRejected, safe_extract, save_upload, suffix_of


class DatasetsMixin:
    """Methods of :class:`~medlens.serving.service.Service` (its settings, data folder, database)."""

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
