"""Classification metrics with bootstrap confidence intervals, calibration, and the summary.json builder.

Point values come from scikit-learn. Confidence intervals come from a percentile bootstrap over cases, or over
patients when cases are grouped by patient (a cluster bootstrap: slices of one patient are correlated, so
resampling slices would give intervals that are too narrow). Every resample is a row of case weights (how
often each case, or its patient, was drawn), and all resamples are scored at once from weighted counts
(``np.bincount``) and a weighted rank AUC, instead of calling scikit-learn a thousand times.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from medlens import __version__
from medlens.errors import MedlensError
from medlens.evaluation.metrics_bootstrap import (
    _bootstrap,
    _calibration_inputs,
    _interval,
    _resample_metrics,
)

__all__ = [
    "SCHEMA",
    "_check_inputs",
    "_resample_metrics",
    "arrays_from_summary",
    "build_summary",
    "calibration",
    "cases_from_arrays",
    "classification_metrics",
]

SCHEMA = "medlens.summary/1"


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    n_bins: int = 10,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Score class probabilities against true labels, with percentile-bootstrap confidence intervals.

    Args:
        y_true: true class index per case, shape (N,).
        probs: class probabilities, shape (N, C); each row sums to 1. Predictions are ``argmax(probs)``.
        class_names: the C class names in column order.
        n_bootstrap: number of case resamples for the intervals (0 disables them: ``ci95`` is null).
        seed: seed of the resampling; the same seed gives the same intervals.
        ci: coverage of the interval (stored under the contract's key ``ci95`` and in ``bootstrap.ci``).
        n_bins: confidence bins of the calibration curve and ECE.
        groups: optional patient id per case; when given, the bootstrap resamples whole patients.

    Returns:
        ``{"metrics": {name: {"value", "ci95"[, "note"]}}, "per_class": {cls: {precision, recall, f1,
        support}}, "averages": {"macro avg": ..., "weighted avg": ...}, "confusion_matrix": [[...]],
        "class_names": [...], "calibration": {...}, "bootstrap": {...}}``. Metric names: ``accuracy``,
        ``balanced_accuracy``, ``macro_f1``, ``weighted_f1``, ``auc`` (binary, positive = second class) or
        ``auc_ovr`` (multiclass one-vs-rest macro), ``ece``. AUC is null with a ``note`` when a class has no
        cases; resamples in which it is undefined are skipped.
    """
    y_true, probs, names = _check_inputs(y_true, probs, class_names)
    if not 0 < ci < 1:
        raise MedlensError(f"ci must be between 0 and 1 (e.g. 0.95), got {ci}")
    y_pred = probs.argmax(axis=1)
    labels = np.arange(len(names))
    values, notes = _point_metrics(y_true, y_pred, probs, names)
    cal = calibration(y_true, probs, n_bins=n_bins)
    values["ece"] = cal["ece"]
    codes = None
    if groups is not None:
        groups = np.asarray(groups).astype(str)
        if groups.shape != y_true.shape:
            raise MedlensError(f"groups has {groups.size} entries for {y_true.size} cases")
        codes = np.unique(groups, return_inverse=True)[1].reshape(-1)
    samples = _bootstrap(
        y_true, probs, n_bootstrap, seed, n_bins, with_auc=None not in values.values(), codes=codes
    )
    unit = "cases" if codes is None else f"patients ({int(codes.max()) + 1})"
    return {
        "metrics": _metric_entries(values, notes, samples, ci, n_bootstrap),
        "per_class": _per_class(y_true, y_pred, names),
        "averages": _averages(y_true, y_pred, labels),
        "confusion_matrix": _confusion(y_true, y_pred, len(names)).tolist(),
        "class_names": names,
        "calibration": cal,
        "bootstrap": {
            "n_resamples": int(n_bootstrap),
            "seed": int(seed),
            "ci": float(ci),
            "method": f"percentile, {unit} resampled with replacement",
        },
    }


def calibration(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Expected calibration error of the top-class confidence, and the reliability-curve bins.

    Args:
        y_true: true class index per case, shape (N,).
        probs: class probabilities, shape (N, C).
        n_bins: equal-width confidence bins over [0, 1]; a bin holds confidences in (lower, upper].

    Returns:
        ``{"ece": float, "n_bins": int, "bins": [{"lower", "upper", "count", "confidence", "accuracy"}]}``;
        ``confidence`` and ``accuracy`` are null for empty bins.
    """
    if int(n_bins) < 1:
        raise MedlensError(f"n_bins must be at least 1, got {n_bins}")
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1] if probs.ndim == 2 else 0
    y_true, probs, _ = _check_inputs(y_true, probs, [str(c) for c in range(n_classes)])
    conf, correct, bin_of = _calibration_inputs(y_true, probs, n_bins)
    count = np.bincount(bin_of, minlength=n_bins)
    conf_sum = np.bincount(bin_of, weights=conf, minlength=n_bins)
    correct_sum = np.bincount(bin_of, weights=correct, minlength=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = [
        {
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "count": int(count[i]),
            "confidence": float(conf_sum[i] / count[i]) if count[i] else None,
            "accuracy": float(correct_sum[i] / count[i]) if count[i] else None,
        }
        for i in range(n_bins)
    ]
    # sum_b (n_b / N) |acc_b - conf_b| == sum_b |correct_b - conf_b| / N
    ece = float(np.abs(correct_sum - conf_sum).sum() / len(conf))
    return {"ece": ece, "n_bins": int(n_bins), "bins": bins}


def cases_from_arrays(
    case_ids: Sequence[Any],
    patient_ids: Sequence[Any] | None,
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """Per-case records for summary.json.

    Patient ids default to the case ids; probabilities are rounded to 6 decimals to keep the file small.
    """
    y_true, probs, names = _check_inputs(y_true, probs, class_names)
    patient_ids = case_ids if patient_ids is None else patient_ids
    if not len(case_ids) == len(patient_ids) == len(y_true):
        raise MedlensError(
            f"case_ids ({len(case_ids)}), patient_ids ({len(patient_ids)}) and y_true "
            f"({len(y_true)}) must have the same length"
        )
    y_pred = probs.argmax(axis=1)
    return [
        {
            "case_id": str(cid),
            "patient_id": str(pid),
            "target": names[t],
            "prediction": names[p],
            "probabilities": {cls: float(v) for cls, v in zip(names, row)},  # full precision: reproducible
        }
        for cid, pid, t, p, row in zip(case_ids, patient_ids, y_true, y_pred, probs)
    ]


def build_summary(
    *,
    task: str,
    run: Any,
    data: Any,
    split: str,
    n_cases: int,
    metrics_result: dict[str, Any],
    cases: Sequence[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the summary.json dict (schema ``medlens.summary/1``, see DESIGN.md "File contracts").

    Args:
        task: "classification", "detection" or "segmentation".
        run: the run directory evaluated.
        data: path or name of the evaluated source.
        split: which cases the numbers are on (e.g. "test").
        n_cases: number of cases scored; must equal ``len(cases)`` when cases are given.
        metrics_result: what :func:`classification_metrics` returned (its keys are copied to the top level).
        cases: per-case records, e.g. from :func:`cases_from_arrays`.
        extra: more top-level keys (e.g. "model", "config", "skipped"); they may not replace contract keys.

    Returns:
        The summary dict, JSON-ready; per-case records come last.
    """
    if "metrics" not in metrics_result:
        raise MedlensError("metrics_result has no 'metrics' key; pass what classification_metrics returned")
    if cases and len(cases) != int(n_cases):
        raise MedlensError(f"n_cases is {n_cases} but {len(cases)} case records were given")

    summary: dict[str, Any] = {
        "schema": SCHEMA,
        "task": str(task),
        "run": str(run),
        "data": str(data),
        "split": str(split),
        "n_cases": int(n_cases),
        "medlens_version": __version__,
    }
    summary.update(metrics_result)
    for key, value in (extra or {}).items():
        if key in summary or key == "cases":
            raise MedlensError(f"extra key {key!r} would overwrite a summary field; rename it")
        summary[key] = value
    summary["cases"] = list(cases)
    return summary


def arrays_from_summary(summary: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rebuild ``(y_true, probs, class_names)`` from a classification summary's per-case records."""
    names = list(summary.get("class_names") or [])
    cases = summary.get("cases") or []
    if not names or not cases:
        raise MedlensError(
            f"summary of run {summary.get('run', '?')} has no class_names or no cases; "
            "re-run `medlens evaluate` on it"
        )
    index = {cls: i for i, cls in enumerate(names)}
    try:
        y_true = np.array([index[c["target"]] for c in cases], dtype=np.int64)
        probs = np.array([[c["probabilities"][cls] for cls in names] for c in cases], dtype=np.float64)
    except KeyError as err:
        raise MedlensError(
            f"summary of run {summary.get('run', '?')} has a case with unknown class "
            f"{err}; re-run `medlens evaluate` on it"
        ) from err
    return y_true, probs, names


# -- internals ---------------------------------------------------------------------------------------
def _check_inputs(y_true: Any, probs: Any, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list]:
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    names = [str(c) for c in class_names]
    if p.ndim != 2 or y.ndim != 1 or len(y) != len(p) or len(y) == 0:
        raise MedlensError(
            f"need y_true of shape (N,) and probs of shape (N, C) with N > 0; got {y.shape} and {p.shape}"
        )
    if p.shape[1] != len(names) or len(names) < 2 or len(set(names)) != len(names):
        raise MedlensError(
            f"probs has {p.shape[1]} columns but class_names is {names}; need one unique "
            "name per column and at least 2 classes"
        )
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise MedlensError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= len(names):
        raise MedlensError(
            f"y_true holds class index {y.min() if y.min() < 0 else y.max()}, outside "
            f"0..{len(names) - 1} for classes {names}"
        )
    if not np.all(np.isfinite(p)) or p.min() < 0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise MedlensError(
            "probs must be finite, non-negative, and each row must sum to 1 "
            "(apply softmax to the model's logits first)"
        )
    # Renormalise rows that are off (float32 softmax) so scikit-learn's stricter check passes; rows already
    # summing to 1 stay untouched, which keeps repeated calls on the same scores identical.
    sums = p.sum(axis=1, keepdims=True)
    return y, np.where(np.abs(sums - 1.0) > 1e-12, p / sums, p), names


def _point_metrics(y_true, y_pred, probs, names) -> tuple[dict[str, float | None], dict[str, str]]:
    labels = np.arange(len(names))
    with warnings.catch_warnings():
        # balanced accuracy warns when a predicted class has no true cases; the mean skips that class
        warnings.simplefilter("ignore")
        values: dict[str, float | None] = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(
                f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
            ),
        }
    auc_name = "auc" if len(names) == 2 else "auc_ovr"
    missing = [names[c] for c in labels if not np.any(y_true == c)]
    if missing:
        values[auc_name] = None
        return values, {auc_name: f"undefined: no cases of class {', '.join(missing)} among the true labels"}
    if len(names) == 2:
        values[auc_name] = float(roc_auc_score(y_true, probs[:, 1]))
    else:
        values[auc_name] = float(
            roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=labels)
        )
    return values, {}


def _metric_entries(values, notes, samples, ci, n_bootstrap) -> dict[str, dict[str, Any]]:
    metrics = {}
    for name, value in values.items():
        entry: dict[str, Any] = {"value": value, "ci95": _interval(samples.get(name), ci)}
        skipped = int(np.isnan(samples[name]).sum()) if name in samples else 0
        if name in notes:
            entry["note"] = notes[name]
        elif skipped:
            entry["note"] = f"{skipped} of {n_bootstrap} resamples skipped (a class absent from the resample)"
        metrics[name] = entry
    return metrics


def _per_class(y_true, y_pred, names) -> dict[str, dict[str, float]]:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(names)), zero_division=0
    )
    return {
        cls: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for cls, p, r, f, s in zip(names, precision, recall, f1, support)
    }


def _averages(y_true, y_pred, labels) -> dict[str, dict[str, float]]:
    out = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0
        )
        out[f"{average} avg"] = {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": len(y_true),
        }
    return out


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)
