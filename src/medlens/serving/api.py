"""The JSON API (OpenAPI at /docs). The paths and keys written in the issue are contracts; a few more are
added (lists of datasets and jobs, run files, explanation pictures, agreement, jobs on a run)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from medlens.errors import MedlensError
from medlens.serving.app import api_actor
from medlens.serving.service import MAX_ID, Service

router = APIRouter(prefix="/api")
ID = Annotated[int, Path(ge=1, le=MAX_ID)]
ERRORS = {
    400: {"description": "Bad request: {'error': one line}"},
    401: {"description": "No or wrong token"},
    404: {"description": "Not found"},
    422: {"description": "Invalid input"},
}


def _svc(request: Request) -> Service:
    return request.app.state.service


class ReadIn(BaseModel):
    reader: str = Field(min_length=1, max_length=120)
    finding: str = Field(min_length=1, max_length=200, description="agree, disagree, or a class name")


class TrainIn(BaseModel):
    """``dataset`` plus any of the training options (TrainConfig fields); ``name`` names the run folder."""

    model_config = ConfigDict(extra="allow")
    dataset: int = Field(ge=1, le=MAX_ID)
    task: str = "classification"
    model: str | None = None
    name: str | None = None


class JobIn(BaseModel):
    """``kind`` and that kind's fields (checked by :mod:`medlens.serving.params` before queueing): evaluate
    takes dataset or data, split, n_bootstrap, positive, threshold, cohorts, metadata, min_cell, reference,
    readers, patient_agg; calibrate takes split, reset; triage takes dataset (required), history, config,
    urgent, split, now, explain, evaluate, read_every, arrive_every, n_bootstrap. Paths must lie inside an
    --allow-path folder or an uploaded dataset."""

    model_config = ConfigDict(extra="allow")
    kind: str = Field(pattern="^(evaluate|calibrate|triage)$")


class PathIn(BaseModel):
    path: str = Field(min_length=1, max_length=4096)


def _report_csp() -> dict[str, str]:
    from medlens.serving.app import REPORT_CSP

    return {"Content-Security-Policy": REPORT_CSP}


@router.get("/health", responses={200: {"description": "always"}})
def health() -> dict[str, str]:
    """Liveness; the only call without a token."""
    return {"status": "ok"}


@router.get("/runs", responses=ERRORS)
def list_runs(request: Request, actor: str = Depends(api_actor)) -> list[dict[str, Any]]:
    """The runs: ``[{"id", "task", "model", "created", "metrics"}]`` (run folders copied into DATA_DIR/runs
    appear here)."""
    return _svc(request).list_runs()


@router.get("/runs/{run_id}", responses=ERRORS)
def get_run(run_id: ID, request: Request, actor: str = Depends(api_actor)) -> dict[str, Any]:
    """The run's summary.json."""
    return _svc(request).run_summary(run_id)


@router.post("/runs", status_code=202, responses=ERRORS)
def start_run(body: TrainIn, request: Request, actor: str = Depends(api_actor)) -> dict[str, int]:
    """Train a new run on a dataset: ``{"job", "run"}``; follow it with GET /api/jobs/{job}."""
    options = body.model_dump(exclude_none=True)
    dataset = options.pop("dataset")
    return _svc(request).start_training(dataset, options, actor)


@router.post("/runs/{run_id}/predict", responses=ERRORS)
def predict(
    run_id: ID,
    request: Request,
    file: UploadFile = File(..., description="One image, DICOM file or NIfTI volume"),
    patient_id: str | None = Form(None, max_length=200),
    referral_priority: str | None = Form(None, max_length=40),
    study_time: str | None = Form(None, max_length=40, description="ISO 8601"),
    explain: bool = Query(True, description="Draw the explanation picture"),
    actor: str = Depends(api_actor),
) -> dict[str, Any]:
    """Predict and explain one study with the run, and add it to the run's worklist: ``{"study",
    "prediction", "probabilities", "calibrated", "ood": {"score", "flag"}, "explanation_png",
    "rationale"}``."""
    return _svc(request).predict(
        run_id,
        file.file,
        file.filename or "upload",
        patient_id=patient_id,
        referral_priority=referral_priority,
        study_time=study_time,
        explain=explain,
        actor=actor,
    )


@router.get("/runs/{run_id}/agreement", responses=ERRORS)
def agreement(run_id: ID, request: Request, actor: str = Depends(api_actor)) -> dict[str, Any]:
    """Reader-vs-model agreement (Cohen's kappa) over the reads recorded on the run's worklist."""
    return _svc(request).agreement(run_id)


@router.post("/runs/{run_id}/jobs", status_code=202, responses=ERRORS)
def run_job(run_id: ID, body: JobIn, request: Request, actor: str = Depends(api_actor)) -> dict[str, int]:
    """Queue evaluate, calibrate or triage (with ``dataset``) on a run: ``{"job"}``."""
    params = body.model_dump(exclude_none=True)
    kind = params.pop("kind")
    return {"job": _svc(request).start_job(kind, run_id, params, actor)}


@router.get("/runs/{run_id}/files/{name:path}", responses=ERRORS)
def run_file(run_id: ID, name: str, request: Request, actor: str = Depends(api_actor)) -> FileResponse:
    """A file of the run folder (report.html, figures/*.png, model_card.md)."""
    path = _svc(request).run_file(run_id, name)
    return FileResponse(path, headers=_report_csp() if path.suffix == ".html" else None)


@router.get("/explanations/{run_id}/{name}", responses=ERRORS)
def explanation(run_id: ID, name: str, request: Request, actor: str = Depends(api_actor)) -> FileResponse:
    """An explanation picture made by predict."""
    return FileResponse(_svc(request).explanation_file(run_id, name), media_type="image/png")


@router.get("/worklist", responses=ERRORS)
def worklist(
    request: Request, run: int = Query(..., ge=1, le=MAX_ID), actor: str = Depends(api_actor)
) -> list[dict[str, Any]]:
    """The run's worklist, highest priority first: ``[{"study", "rank", "priority", "reason", "status"}]``."""
    return _svc(request).worklist(run)


@router.post("/worklist/{study}/read", responses=ERRORS)
def read(study: ID, body: ReadIn, request: Request, actor: str = Depends(api_actor)) -> dict[str, Any]:
    """Record that ``reader`` read the study, with their finding (agree / disagree / a class name)."""
    return _svc(request).mark_read(study, body.reader, body.finding, actor)


@router.get("/datasets", responses=ERRORS)
def list_datasets(request: Request, actor: str = Depends(api_actor)) -> list[dict[str, Any]]:
    return _svc(request).list_datasets()


@router.post(
    "/datasets",
    status_code=201,
    responses=ERRORS | {413: {"description": "Upload too large"}, 415: {"description": "Not a zip"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
                "application/json": {"schema": PathIn.model_json_schema()},
            },
        }
    },
)
async def add_dataset(request: Request, actor: str = Depends(api_actor)) -> JSONResponse:
    """Add a dataset: multipart ``file`` (a zip of class folders, kaggle_3m pairs, NIfTI/MSD or DICOM), or
    JSON ``{"path"}`` under an allowed root. Answers 201 ``{"id", "n_images", "audit_job"}``."""
    from starlette.concurrency import run_in_threadpool

    service = _svc(request)
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise MedlensError("multipart upload has no 'file' part; send the zip as the field 'file'")
        result = await run_in_threadpool(service.add_dataset_zip, upload.file, upload.filename or "", actor)
    elif kind.startswith("application/json"):
        try:
            body = PathIn.model_validate(await request.json())
        except Exception as err:
            raise MedlensError('send JSON {"path": "<folder under an allowed root>"}') from err
        result = await run_in_threadpool(service.add_dataset_path, body.path, actor)
    else:
        raise MedlensError("send a zip as multipart field 'file', or JSON {\"path\"}")
    return JSONResponse(result, status_code=201)


@router.get("/datasets/{dataset_id}/audit", responses=ERRORS)
def audit_report(dataset_id: ID, request: Request, actor: str = Depends(api_actor)) -> FileResponse:
    """The dataset's audit.html (once its audit job is done)."""
    return FileResponse(_svc(request).audit_report(dataset_id), media_type="text/html", headers=_report_csp())


@router.get("/jobs", responses=ERRORS)
def list_jobs(request: Request, actor: str = Depends(api_actor)) -> list[dict[str, Any]]:
    return _svc(request).list_jobs()


@router.get("/jobs/{job_id}", responses=ERRORS)
def job(job_id: ID, request: Request, actor: str = Depends(api_actor)) -> dict[str, Any]:
    """``{"state": queued|running|done|failed|cancelled, "progress", "error"}``."""
    return _svc(request).job(job_id)


@router.get("/audit-log", responses=ERRORS)
def audit_log(
    request: Request, limit: int = Query(200, ge=1, le=5000), actor: str = Depends(api_actor)
) -> list[dict[str, Any]]:
    """Who did what, when (uploads, training, predictions, reads, cancels), newest first."""
    return _svc(request).audit_log(limit)


@router.post("/jobs/{job_id}/cancel", responses=ERRORS)
def cancel(job_id: ID, request: Request, actor: str = Depends(api_actor)) -> dict[str, Any]:
    return _svc(request).cancel(job_id, actor)
