"""The pages of datasets (upload, register a folder), runs (train, compare, evaluate, calibrate) and a
job's live progress (cancel).
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from medlens.errors import MedlensError
from medlens.serving.app import AuthError, page_actor
from medlens.serving.pages_common import (
    LOWER_BETTER,
    TASKS,
    TERMINAL,
    _forbidden,
    _int,
    _missing,
    _svc,
    _text,
    _upload,
    error_status,
    one_line,
    ordered_metrics,
    progress_view,
    read_form,
    render,
    see_other,
)
from medlens.serving.service import NotFound

router = APIRouter(include_in_schema=False)


# -- datasets ----------------------------------------------------------------------------------------------
def _datasets_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    service = _svc(request)
    datasets = service.list_datasets()
    for d in datasets:
        d["audit"] = None
        if d["audit_job"]:
            with contextlib.suppress(NotFound):
                d["audit"] = service.job(d["audit_job"])
    return render(
        request,
        "datasets.html",
        status=status,
        error=error,
        title="Datasets",
        nav="datasets",
        datasets=datasets,
        allow_paths=[str(p) for p in request.app.state.settings.allow_paths],
        max_upload_mb=request.app.state.settings.max_upload_mb,
    )


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, actor: str = Depends(page_actor)) -> Response:
    return _datasets_page(request)


@router.post("/datasets", response_class=HTMLResponse)
async def add_dataset(request: Request, actor: str = Depends(page_actor)) -> Response:
    service = _svc(request)
    try:
        form = await read_form(request, files=1)
    except AuthError as err:
        return _forbidden(request, err)
    try:
        upload, path = _upload(form), _text(form, "path")
        if upload is not None:
            await run_in_threadpool(service.add_dataset_zip, upload.file, upload.filename or "", actor)
        elif path:
            await run_in_threadpool(service.add_dataset_path, path, actor)
        else:
            raise MedlensError("choose a .zip file to upload, or give a folder path")
    except MedlensError as err:
        return _datasets_page(request, error_status(err), one_line(err))
    return see_other("/datasets")


# -- runs --------------------------------------------------------------------------------------------------
def _runs_page(
    request: Request, status: int = 200, error: str | None = None, values: dict[str, Any] | None = None
) -> Response:
    service = _svc(request)
    runs = service.list_runs()
    columns = ordered_metrics(
        k for r in runs for k, v in (r["metrics"] or {}).items() if isinstance(v, (int, float))
    )
    best: dict[str, Any] = {}
    for col in columns:
        vals = [r["metrics"].get(col) for r in runs if isinstance(r["metrics"].get(col), (int, float))]
        if len(set(vals)) > 1:  # bold only where the runs differ
            best[col] = min(vals) if col in LOWER_BETTER else max(vals)
    datasets = service.list_datasets()
    selected = request.query_params.get("dataset")
    form = {
        "dataset": selected or (str(datasets[-1]["id"]) if datasets else ""),
        "task": "classification",
        "model": "",
        "epochs": "",
        "image_size": "",
        "name": "",
    }
    form.update({k: str(v) for k, v in (values or {}).items() if k in form})
    return render(
        request,
        "runs.html",
        status=status,
        error=error,
        title="Runs",
        nav="runs",
        runs=runs,
        columns=columns,
        best=best,
        lower_better=LOWER_BETTER,
        datasets=datasets,
        tasks=TASKS,
        form=form,
    )


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, actor: str = Depends(page_actor)) -> Response:
    return _runs_page(request)


@router.post("/runs", response_class=HTMLResponse)
async def start_run(request: Request, actor: str = Depends(page_actor)) -> Response:
    service = _svc(request)
    try:
        form = await read_form(request)
    except AuthError as err:
        return _forbidden(request, err)
    values = {k: _text(form, k) for k in ("dataset", "task", "model", "epochs", "image_size", "name")}
    try:
        dataset = _int(form, "dataset")
        if dataset is None:
            raise MedlensError("choose a dataset (upload one on the Datasets page first)")
        task = values["task"] or "classification"
        if task not in TASKS:
            raise MedlensError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
        options: dict[str, Any] = {"task": task}
        if values["model"]:
            options["model"] = values["model"]
        for key, what in (("epochs", "epochs"), ("image_size", "image size")):
            number = _int(form, key, what)
            if number is not None:
                options[key] = number
        if values["name"]:
            options["name"] = values["name"]
        started = await run_in_threadpool(service.start_training, dataset, options, actor)
    except MedlensError as err:
        return _runs_page(request, error_status(err), one_line(err), values)
    return see_other(f"/jobs/{started['job']}")


def _run_page(request: Request, run_id: int, status: int = 200, error: str | None = None) -> Response:
    service = _svc(request)
    run = next((r for r in service.list_runs() if r["id"] == run_id), None)
    if run is None:
        return _missing(request, f"run {run_id} does not exist", "runs")
    try:
        summary = service.run_summary(run_id)
    except NotFound:
        summary = None
    metrics = []
    if summary:
        raw = summary.get("metrics") or {}
        for name in ordered_metrics(raw):
            entry = raw[name]
            value = entry.get("value") if isinstance(entry, dict) else entry
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            ci = entry.get("ci95") if isinstance(entry, dict) else None
            metrics.append({"name": name, "value": value, "ci": ci if ci and len(ci) == 2 else None})
    files = {}
    for name in ("report.html", "model_card.md", "summary.json", "history.csv"):
        try:
            service.run_file(run_id, name)
            files[name] = f"/api/runs/{run_id}/files/{name}"
        except NotFound:
            pass
    jobs = [j for j in service.list_jobs(limit=200) if j["run"] == run_id]
    return render(
        request,
        "run.html",
        status=status,
        error=error,
        title=f"Run {run['name']}",
        nav="runs",
        run=run,
        summary=summary,
        metrics=metrics,
        per_class=(summary or {}).get("per_class") or {},
        files=files,
        jobs=jobs,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: int, request: Request, actor: str = Depends(page_actor)) -> Response:
    return _run_page(request, run_id)


@router.post("/runs/{run_id}/jobs", response_class=HTMLResponse)
async def run_job(run_id: int, request: Request, actor: str = Depends(page_actor)) -> Response:
    service = _svc(request)
    try:
        form = await read_form(request)
    except AuthError as err:
        return _forbidden(request, err)
    kind = _text(form, "kind")
    try:
        if kind not in ("evaluate", "calibrate"):
            raise MedlensError(f"job kind must be evaluate or calibrate; got {kind!r}")
        job_id = await run_in_threadpool(service.start_job, kind, run_id, {}, actor)
    except MedlensError as err:
        return _run_page(request, run_id, error_status(err), one_line(err))
    return see_other(f"/jobs/{job_id}")


# -- jobs --------------------------------------------------------------------------------------------------
def _job_page(request: Request, job_id: int, status: int = 200, error: str | None = None) -> Response:
    try:
        job = _svc(request).job(job_id)
    except NotFound as err:
        return _missing(request, one_line(err), "runs")
    return render(
        request,
        "job.html",
        status=status,
        error=error,
        title=f"Job {job_id}",
        nav="runs" if job["kind"] != "audit" else "datasets",
        job=job,
        view=progress_view(job),
        terminal=job["state"] in TERMINAL,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: int, request: Request, actor: str = Depends(page_actor)) -> Response:
    return _job_page(request, job_id)


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
async def cancel_job(job_id: int, request: Request, actor: str = Depends(page_actor)) -> Response:
    try:
        await read_form(request)
    except AuthError as err:
        return _forbidden(request, err)
    try:
        await run_in_threadpool(_svc(request).cancel, job_id, actor)
    except MedlensError as err:
        return _job_page(request, job_id, error_status(err), one_line(err))
    return see_other(f"/jobs/{job_id}")
