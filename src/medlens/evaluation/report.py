"""The self-contained HTML report of one evaluated run, rendered from summary.json alone.

Everything is inline (CSS, figures as base64 PNG data URIs): the file can be mailed or archived and opened
offline. Jinja2 autoescaping is on, so case ids and paths from the data can never inject markup.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from medlens import __version__
from medlens.errors import MedlensError
from medlens.evaluation.clinical_report import clinical_context
from medlens.evaluation.plots import summary_figures
from medlens.tasks.registry import get_task
from medlens.tasks.reporting import N_WORST, fmt
from medlens.utils.files import atomic_write_text

TEMPLATES = Path(__file__).parent / "templates"
# SVG is left out on purpose: it can carry scripts.
_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

METRIC_LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "weighted_f1": "Weighted F1",
    "auc": "ROC AUC",
    "auc_ovr": "ROC AUC (one-vs-rest, macro)",
    "ece": "Expected calibration error (lower is better)",
    "dice_patient": "Dice per patient",
    "dice_case": "Dice per case",
    "iou_case": "IoU per case",
    "hd95": "HD95 (lower is better)",
    "iou_mean": "Mean IoU",
    "iou50_rate": "Detected at IoU >= 0.5",
    "auc_delong": "ROC AUC (DeLong)",
}
FIGURE_CAPTIONS = {
    "confusion_matrix": "Confusion matrix (rows: true class; colour: fraction of the row; counts annotated)",
    "roc": "ROC curves",
    "reliability": "Reliability diagram: how often the top class is right at each confidence",
    "operating_points": "Sensitivity against flag rate, precision-recall (AP), "
    "and decision curve (net benefit)",
    "cohorts_and_fairness": "Fairness heat-map: each cohort's metric relative to the reference group",
    "history": "Training history",
    "learning_curve": "Learning curve",
}


def render_report(
    summary: dict[str, Any],
    out_path: str | Path,
    *,
    figures: dict[str, Path | None] | None = None,
    config: dict[str, Any] | None = None,
    data_summary: dict[str, dict[str, int]] | None = None,
    skipped: list[dict[str, Any]] | None = None,
    title: str | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write one self-contained HTML report for an evaluated run; the task's block comes from its
    ``report_section`` hook.

    Args:
        summary: the summary.json dict (the only source of numbers).
        out_path: HTML file to write (atomically).
        figures: name -> PNG path to embed. The standard figures (``confusion_matrix``, ``roc``,
            ``reliability``) are drawn from the summary unless given here (names match case- and
            space-insensitively, so "Confusion matrix" counts); map a name to None to leave it out.
        config: the run's resolved config, shown as YAML (default: ``summary["config"]`` if present).
        data_summary: class counts per split, ``{split: {class: n}}`` (default: ``summary["data_summary"]``).
        skipped: unreadable/skipped files, ``[{"path", "reason"}]`` (default: ``summary["skipped"]``).
        title: page title (default: "medlens report: <run>").
        card: the model card (:func:`medlens.evaluation.model_card.model_card`) to show, or None.

    Returns:
        The written path.
    """
    if not isinstance(summary, dict) or "metrics" not in summary:
        raise MedlensError("summary has no 'metrics'; pass the dict read from a run's summary.json")
    figures = dict(figures or {})
    with tempfile.TemporaryDirectory(prefix="medlens-figures-") as tmp:
        standard = summary_figures(summary, tmp, skip=[_figure_key(name) for name in figures])
        images = [_embed(name, path) for name, path in {**standard, **figures}.items() if path is not None]
    config = config if config is not None else summary.get("config")
    html = render_template(
        "report.html.j2",
        title=title or f"medlens report: {summary.get('run', '')}",
        summary=summary,
        ci_label=ci_label(summary),
        metrics=metric_rows(summary),
        class_rows=_class_rows(summary),
        confusion=_confusion_table(summary),
        figures=images,
        skipped=skipped if skipped is not None else summary.get("skipped") or [],
        config_text=_yaml(config) if config else "",
        data_table=_data_table(data_summary if data_summary is not None else summary.get("data_summary")),
        worst=_worst_cases(summary, N_WORST),
        n_worst=N_WORST,
        loc=get_task(summary.get("task", "classification")).report_section(summary),
        clinical=clinical_context(summary, card),
    )
    return atomic_write_text(out_path, html)


def render_template(name: str, **context: Any) -> str:
    """Render one of the package's templates with autoescaping on."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # the names end in .html.j2, which select_autoescape would not recognise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    return env.get_template(name).render(version=__version__, **context)


def ci_label(summary: dict[str, Any]) -> str:
    """Column heading for the interval, e.g. "95 % CI"."""
    level = (summary.get("bootstrap") or {}).get("ci", 0.95)
    return f"{100 * float(level):g} % CI"


def fmt_ci(ci: Sequence[float] | None, digits: int = 3) -> str:
    """An interval for display, e.g. "[0.941, 0.962]"."""
    if not ci or any(v is None for v in ci):
        return "\u2014"
    return f"[{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"


def metric_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The metrics table: label, value, interval and note per metric, in the summary's order."""
    rows = []
    for name, entry in summary["metrics"].items():
        entry = entry if isinstance(entry, dict) else {"value": entry}
        rows.append(
            {
                "name": name,
                "label": METRIC_LABELS.get(name, name),
                "value": fmt(entry.get("value")),
                "ci": fmt_ci(entry.get("ci95")),
                "note": str(entry.get("note", "")),
            }
        )
    return rows


def _class_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-class rows plus accuracy / macro avg / weighted avg, like scikit-learn's classification report."""
    per_class = summary.get("per_class") or {}
    if not per_class:
        return []
    keys = ("precision", "recall", "f1", "support")
    rows = [
        {"name": cls, "kind": "class", **{k: fmt(v.get(k)) for k in keys}} for cls, v in per_class.items()
    ]
    accuracy = (summary["metrics"].get("accuracy") or {}).get("value")
    if accuracy is not None:
        rows.append(
            {
                "name": "accuracy",
                "kind": "avg",
                "precision": "",
                "recall": "",
                "f1": fmt(accuracy),
                "support": fmt(summary.get("n_cases")),
            }
        )
    for name, v in (summary.get("averages") or {}).items():
        rows.append({"name": name, "kind": "avg", **{k: fmt(v.get(k)) for k in keys}})
    return rows


def _confusion_table(summary: dict[str, Any]) -> dict[str, Any] | None:
    cm, names = summary.get("confusion_matrix"), summary.get("class_names")
    if not cm or not names or len(names) > 25:
        return None
    return {"names": names, "rows": list(zip(names, cm))}


def _worst_cases(summary: dict[str, Any], k: int) -> list[dict[str, str]]:
    """The ``k`` cases with the lowest probability on their true class."""
    scored = []
    for case in summary.get("cases") or []:
        probs = case.get("probabilities") or {}  # only cases with class probabilities rank here
        if probs and case.get("target") in probs:
            scored.append((float(probs[case["target"]]), case))
    scored.sort(key=lambda item: item[0])
    return [
        {
            "case_id": str(c.get("case_id", "")),
            "patient_id": str(c.get("patient_id", "")),
            "target": str(c["target"]),
            "prediction": str(c.get("prediction", "")),
            "p_true": fmt(p),
            "p_pred": fmt((c["probabilities"] or {}).get(c.get("prediction"))),
        }
        for p, c in scored[:k]
    ]


def _data_table(data_summary: dict[str, dict[str, int]] | None) -> dict[str, Any] | None:
    """Class counts per split as rows = classes, columns = splits, with totals."""
    if not data_summary:
        return None
    splits = list(data_summary)
    classes = list(dict.fromkeys(c for counts in data_summary.values() for c in counts))
    rows = [(cls, [data_summary[s].get(cls, 0) for s in splits]) for cls in classes]
    totals = [sum(data_summary[s].values()) for s in splits]
    return {"splits": splits, "rows": rows, "totals": totals}


def _embed(name: str, path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise MedlensError(f"figure {name!r} not found at {path}; create it first or leave it out of figures")
    mime = _IMAGE_TYPES.get(path.suffix.lower())
    if mime is None:
        raise MedlensError(f"figure {name!r} at {path} is not a PNG or JPEG file")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = FIGURE_CAPTIONS.get(_figure_key(name)) or (
        name.replace("_", " ").capitalize() if name.islower() else name
    )
    return {"name": name, "caption": caption, "src": f"data:{mime};base64,{data}"}


def _figure_key(name: str) -> str:
    """ "Confusion matrix" and "confusion_matrix" name the same figure; "Training history" is "history"."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    return {"training_history": "history", "roc_curve": "roc", "roc_curves": "roc"}.get(key, key)


def _yaml(config: dict[str, Any]) -> str:
    import yaml

    # Paths, numpy scalars and the like become plain JSON values first, so safe_dump accepts them.
    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=False, allow_unicode=True)
