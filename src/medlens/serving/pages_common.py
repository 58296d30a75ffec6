"""What every page shares: the Jinja templates and their filters (numbers, times, metric labels), the
metric ordering, and the plumbing of a page (render, redirect, the posted form and its fields, refusals).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile

from medlens import __version__
from medlens.errors import MedlensError
from medlens.serving.app import AuthError, check_form_csrf
from medlens.serving.params import Refused
from medlens.serving.service import NotFound, Service
from medlens.serving.uploads import UploadRejected

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
