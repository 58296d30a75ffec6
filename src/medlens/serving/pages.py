"""Server-rendered pages: log in, the dashboard, datasets, runs (train, compare, evaluate, calibrate), a job's
live progress, one study's prediction and explanation, and the worklist with its readers' agreement.

Every page calls the same :class:`~medlens.serving.service.Service` the JSON API calls. Forms carry the
session's CSRF token as the field ``csrf``; a successful post redirects (303, POST/redirect/GET), a refused
one renders its page again with the one-line error. No inline script or style (the CSP forbids both):
behaviour comes from ``/static/app.js``, looks from ``/static/app.css``.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from medlens import __version__
from medlens.errors import MedlensError
from medlens.serving.app import AuthError, check_form_csrf, page_actor
from medlens.serving.auth import COOKIE, check_token, end_session, get_session, new_session
from medlens.serving.params import Refused
from medlens.serving.service import NotFound, Service
from medlens.serving.uploads import UploadRejected

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).parent / "templates"
#: autoescape everywhere (not only by file suffix): every value a user typed is escaped.
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
)

TASKS = ("classification", "segmentation", "detection")
PRIORITIES = ("stat", "urgent", "routine")
TERMINAL = ("done", "failed", "cancelled")
#: Metrics shown first (in this order) where a run has them; lower is better for those in LOWER_BETTER.
METRIC_ORDER = (
    "accuracy",
    "auc",
    "auc_ovr",
    "macro_f1",
    "dice",
    "iou",
    "hd95",
    "map50",
    "map",
    "balanced_accuracy",
    "weighted_f1",
    "sensitivity",
    "specificity",
    "ece",
    "brier",
)
LOWER_BETTER = {"ece", "brier", "nll", "loss", "hd95", "hausdorff", "mae", "rmse", "froc_fp"}
KEY_METRICS = 4
MAX_FORM_FIELDS = 20


# -- formatting (Jinja filters) ----------------------------------------------------------------------------
def fmt_num(value: Any, digits: int = 3) -> str:
    """A metric for a table cell: floats to ``digits`` places, whole numbers as they are, none as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_pct(value: Any) -> str:
    return "—" if value is None else f"{100 * float(value):.1f} %"


def fmt_when(value: Any) -> str:
    """An ISO time as ``2025-03-14 09:30:12`` (seconds, no zone)."""
    if not value:
        return ""
    text = str(value).replace("T", " ")
    return text[:19]


def fmt_eta(seconds: Any) -> str:
    if seconds is None:
        return "—"
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


#: How a metric's words are written in a label (the rest as they are, the first letter capitalised).
WORDS = {
    "auc": "AUC",
    "ece": "ECE",
    "iou": "IoU",
    "map": "mAP",
    "map50": "mAP@50",
    "hd95": "HD95",
    "f1": "F1",
    "nll": "NLL",
    "ovr": "(one-vs-rest)",
    "ovo": "(one-vs-one)",
    "val": "validation",
}


def metric_label(name: str) -> str:
    """``macro_f1`` → ``Macro F1``, ``auc_ovr`` → ``AUC (one-vs-rest)``, ``ece`` → ``ECE``."""
    text = " ".join(WORDS.get(w, w) for w in str(name).split("_") if w)
    return text[:1].upper() + text[1:] if text else str(name)


templates.env.filters.update(num=fmt_num, pct=fmt_pct, when=fmt_when, eta=fmt_eta, metric=metric_label)


def ordered_metrics(names) -> list[str]:
    names = list(dict.fromkeys(names))
    first = [m for m in METRIC_ORDER if m in names]
    return first + sorted(n for n in names if n not in first)


def key_metrics(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    scalar = {
        k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return [(k, scalar[k]) for k in ordered_metrics(scalar)][:KEY_METRICS]


def progress_view(job: dict[str, Any]) -> dict[str, Any]:
    """What the job page shows of a job's progress row (app.js computes the same from /api/jobs/{id})."""
    p = job.get("progress") or {}
    vals = [(k, v) for k, v in p.items() if k.startswith("val_") and isinstance(v, (int, float))]
    epoch, epochs = p.get("epoch"), p.get("epochs")
    return {
        "stage": p.get("stage") or job.get("state"),
        "epoch": epoch,
        "epochs": epochs,
        "val": ", ".join(f"{k} {fmt_num(v)}" for k, v in vals),
        "eta": fmt_eta(p.get("eta_s")) if p.get("eta_s") is not None else "—",
    }


# -- plumbing ----------------------------------------------------------------------------------------------
def _svc(request: Request) -> Service:
    return request.app.state.service


def _csrf(request: Request) -> str:
    session = getattr(request.state, "session", None)
    return session.csrf if session is not None else ""


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    settings = request.app.state.settings
    base = {
        "csrf": _csrf(request),
        "no_auth": bool(settings.no_auth),
        "version": __version__,
        "error": None,
        "notice": None,
    }
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def error_status(err: MedlensError) -> int:
    """The status of a refused form post: an upload's own (413/415/422), 404 for a missing row, else 400."""
    if isinstance(err, (UploadRejected, Refused)):
        return err.status
    if isinstance(err, NotFound):
        return 404
    return 400


def one_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "the request was refused"


async def read_form(request: Request, *, files: int = 0):
    """The posted form, after its CSRF token was checked (a wrong one renders the refusal as a page)."""
    form = await request.form(max_files=files, max_fields=MAX_FORM_FIELDS)
    check_form_csrf(request, form)
    return form


def _int(form, key: str, what: str | None = None) -> int | None:
    raw = str(form.get(key) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise MedlensError(f"{what or key} must be a whole number; got {raw!r}") from None


def _text(form, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _upload(form, key: str = "file") -> UploadFile | None:
    value = form.get(key)
    if isinstance(value, UploadFile) and value.filename:
        return value
    return None


def _ready_runs(service: Service) -> list[dict[str, Any]]:
    return [r for r in service.list_runs() if r["ready"]]


def _class_names(service: Service, run_id: int) -> list[str]:
    try:
        summary = service.run_summary(run_id)
    except MedlensError:
        return []
    return [str(c) for c in summary.get("class_names") or []]


def _missing(request: Request, message: str, nav: str) -> Response:
    return render(request, "error.html", status=404, title="Not found", nav=nav, message=message)


def _forbidden(request: Request, err: AuthError) -> Response:
    """A refused CSRF token on a page form: a page that says so (not a JSON blob)."""
    return render(request, "error.html", status=err.status, title="Refused", message=str(err))


# -- login ---------------------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    if request.app.state.settings.no_auth:
        return see_other("/")
    with _svc(request).Session() as db:
        if get_session(db, request.cookies.get(COOKIE)) is not None:
            return see_other("/")
    return render(request, "login.html", title="Log in")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    limiter = request.app.state.limiter
    client = request.client.host if request.client else "unknown"
    if limiter.blocked(client):
        return render(
            request, "login.html", status=429, title="Log in", error="too many failed logins; wait a minute"
        )
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    token = _text(form, "token")
    service = _svc(request)
    with service.Session() as db:
        ok = check_token(db, token)
        session = new_session(db) if ok else None
        session_id = session.id if session else None
    if not ok:
        limiter.failed(client)
        message = "wrong token; use the token printed when the server first started"
        return render(request, "login.html", status=401, title="Log in", error=message)
    limiter.succeeded(client)
    response = see_other("/")
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, actor: str = Depends(page_actor)) -> Response:
    try:
        await read_form(request)
    except AuthError as err:
        return _forbidden(request, err)
    with _svc(request).Session() as db:
        end_session(db, request.cookies.get(COOKIE))
    response = see_other("/login" if not request.app.state.settings.no_auth else "/")
    response.delete_cookie(COOKIE, path="/")
    return response


# -- dashboard ---------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, actor: str = Depends(page_actor)) -> Response:
    service = _svc(request)
    runs = service.list_runs()
    for run in runs:
        run["key_metrics"] = key_metrics(run["metrics"])
    return render(
        request,
        "dashboard.html",
        title="Dashboard",
        nav="dashboard",
        runs=runs,
        datasets=service.list_datasets(),
        jobs=service.list_jobs(limit=10),
    )


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
