"""The pages of one study (upload, predict, explain) and the worklist with its readers' agreement."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from medlens.errors import MedlensError
from medlens.serving.app import AuthError, page_actor
from medlens.serving.pages_common import (
    PRIORITIES,
    _class_names,
    _forbidden,
    _int,
    _missing,
    _ready_runs,
    _svc,
    _text,
    _upload,
    error_status,
    one_line,
    read_form,
    render,
    see_other,
)

router = APIRouter(include_in_schema=False)


# -- one study ---------------------------------------------------------------------------------------------
def _study_page(
    request: Request, status: int = 200, error: str | None = None, values: dict[str, Any] | None = None
) -> Response:
    runs = _ready_runs(_svc(request))
    form = {
        "run": request.query_params.get("run", ""),
        "patient_id": "",
        "referral_priority": "",
        "study_time": "",
    }
    form.update({k: str(v) for k, v in (values or {}).items() if k in form})
    if not form["run"] and runs:
        form["run"] = str(runs[-1]["id"])
    return render(
        request,
        "study.html",
        status=status,
        error=error,
        title="Study",
        nav="study",
        runs=runs,
        priorities=PRIORITIES,
        form=form,
    )


@router.get("/study", response_class=HTMLResponse)
def study_page(request: Request, actor: str = Depends(page_actor)) -> Response:
    return _study_page(request)


@router.post("/study", response_class=HTMLResponse)
async def predict_study(request: Request, actor: str = Depends(page_actor)) -> Response:
    service = _svc(request)
    try:
        form = await read_form(request, files=1)
    except AuthError as err:
        return _forbidden(request, err)
    values = {k: _text(form, k) for k in ("run", "patient_id", "referral_priority", "study_time")}
    try:
        run_id = _int(form, "run")
        if run_id is None:
            raise MedlensError("choose a run (a trained model) first")
        upload = _upload(form)
        if upload is None:
            raise MedlensError("choose an image, DICOM or NIfTI file to upload")
        priority = values["referral_priority"] or None
        if priority is not None and priority not in PRIORITIES:
            raise MedlensError(f"referral priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        for key in ("patient_id", "study_time"):
            if len(values[key]) > 200:
                raise MedlensError(f"{key.replace('_', ' ')} is too long (200 characters at most)")
        result = await run_in_threadpool(
            lambda: service.predict(
                run_id,
                upload.file,
                upload.filename or "upload",
                patient_id=values["patient_id"] or None,
                referral_priority=priority,
                study_time=values["study_time"] or None,
                actor=actor,
            )
        )
    except MedlensError as err:
        return _study_page(request, error_status(err), one_line(err), values)
    run = next((r for r in service.list_runs() if r["id"] == run_id), {"id": run_id, "name": str(run_id)})
    probabilities = sorted(
        ((str(k), float(v)) for k, v in (result.get("probabilities") or {}).items()),
        key=lambda kv: kv[1],
        reverse=True,
    )
    return render(
        request,
        "result.html",
        title="Study result",
        nav="study",
        result=result,
        run=run,
        filename=Path(str(upload.filename).replace("\\", "/")).name,
        patient_id=values["patient_id"],
        referral_priority=priority,
        probabilities=probabilities,
    )


# -- the worklist ------------------------------------------------------------------------------------------
def _worklist_page(
    request: Request, run_id: int | None, reader: str = "", status: int = 200, error: str | None = None
) -> Response:
    service = _svc(request)
    runs = _ready_runs(service)
    rows: list[dict[str, Any]] = []
    agreement = None
    classes: list[str] = []
    run = None
    if run_id is not None:
        run = next((r for r in service.list_runs() if r["id"] == run_id), None)
        if run is None:
            return _missing(request, f"run {run_id} does not exist", "worklist")
        if run["ready"]:
            rows = service.worklist(run_id)
            agreement = service.agreement(run_id)
            classes = _class_names(service, run_id)
        elif error is None:
            error = f"run {run['name']} has no model yet; wait for its training job"
    return render(
        request,
        "worklist.html",
        status=status,
        error=error,
        title="Worklist",
        nav="worklist",
        runs=runs,
        run=run,
        rows=rows,
        n_unread=sum(1 for r in rows if r["status"] != "read"),
        agreement=agreement,
        classes=classes,
        reader=reader,
    )


@router.get("/worklist", response_class=HTMLResponse)
def worklist_page(request: Request, actor: str = Depends(page_actor)) -> Response:
    raw = request.query_params.get("run", "").strip()
    try:
        run_id = int(raw) if raw else None
    except ValueError:
        return _worklist_page(request, None, status=400, error=f"run must be a run id; got {raw!r}")
    return _worklist_page(request, run_id, reader=request.query_params.get("reader", "")[:120])


@router.post("/worklist/{study_id}/read", response_class=HTMLResponse)
async def read_study(study_id: int, request: Request, actor: str = Depends(page_actor)) -> Response:
    try:
        form = await read_form(request)
    except AuthError as err:
        return _forbidden(request, err)
    reader, finding = _text(form, "reader"), _text(form, "finding")
    try:
        run_id = _int(form, "run")
    except MedlensError:
        run_id = None
    try:
        await run_in_threadpool(_svc(request).mark_read, study_id, reader, finding, actor)
    except MedlensError as err:
        return _worklist_page(request, run_id, reader[:120], error_status(err), one_line(err))
    query = {"run": run_id, "reader": reader} if run_id is not None else {"reader": reader}
    return see_other(f"/worklist?{urlencode(query)}#study-{study_id}")
