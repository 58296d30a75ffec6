"""Operating points of a classifier: threshold tables, DeLong AUC intervals, and curves for clinical reading.

A threshold turns a score into a decision (a case is flagged positive when its score is >= the threshold). For
each positive class (one-vs-rest) the threshold table gives the confusion counts and the clinical rates with
Wilson intervals at a fixed grid of thresholds and at the thresholds that reach target sensitivities or
specificities. All thresholds are scored at once: the positive and negative scores are sorted once and
``np.searchsorted`` counts how many lie below each threshold.

The AUC interval uses DeLong's variance, computed with the fast midrank algorithm of Sun & Xu (2014).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from medlens.errors import MedlensError, did_you_mean
from medlens.evaluation.metrics import _check_inputs

Z95 = 1.959963984540054
DEFAULT_GRID = np.round(np.arange(1, 20) * 0.05, 2)
SENSITIVITY_TARGETS = (0.90, 0.95, 0.99)
SPECIFICITY_TARGETS = (0.90, 0.95)
_DECISION_GRID = np.round(np.arange(1, 100) * 0.01, 2)
_MAX_CURVE_POINTS = 200
_RATES = ("sensitivity", "specificity", "ppv", "npv", "flag_rate")


def wilson(k: np.ndarray | float, n: np.ndarray | float, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``k / n``, vectorised over ``k`` and ``n``.

    Args:
        k: successes (array or scalar).
        n: trials (array or scalar, broadcast against ``k``).
        z: standard-normal quantile of the interval (default: 95 %).

    Returns:
        ``(lower, upper)`` arrays clipped to [0, 1]; NaN where ``n == 0``.
    """
    k, n = np.broadcast_arrays(np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64))
    if np.any(k < 0) or np.any(k > n):
        raise MedlensError("wilson needs 0 <= k <= n for every proportion (k successes out of n trials)")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
        # exact ends at k = 0 and k = n, where rounding would leave e.g. 0.9999999999999999
        lower = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
        upper = np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    empty = n == 0
    return np.where(empty, np.nan, lower), np.where(empty, np.nan, upper)


def positive_classes(class_names: Sequence[str], positive: str | None) -> list[int]:
    """Indices of the classes scored one-vs-rest.

    Args:
        class_names: the class names in column order.
        positive: a class name to score alone, or None: binary -> the second class, multiclass -> every class.

    Returns:
        Column indices of the positive classes.
    """
    names = [str(c) for c in class_names]
    if positive is not None:
        if str(positive) not in names:
            raise MedlensError(
                f"positive class {positive!r} is not one of the classes {names}."
                f"{did_you_mean(str(positive), names)} Pass one of these names, or none to use the default."
            )
        return [names.index(str(positive))]
    return [1] if len(names) == 2 else list(range(len(names)))


def operating_points(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    *,
    positive: str | None = None,
    grid: Sequence[float] | np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Threshold table per positive class: counts, rates with Wilson intervals, F1, likelihood ratios.

    Args:
        y_true: true class index per case, shape (N,).
        probs: class probabilities, shape (N, C); each row sums to 1.
        class_names: the C class names in column order.
        positive: score only this class (see :func:`positive_classes`).
        grid: thresholds of the fixed rows, in [0, 1] (default 0.05, 0.10, ..., 0.95).

    Returns:
        JSON-ready rows, per class the grid rows then the target rows. Each row has ``class``, ``threshold``,
        ``target`` (None for grid rows, else e.g. ``"sensitivity>=0.90"``), ``tp``, ``fp``, ``tn``, ``fn``,
        ``sensitivity``, ``specificity``, ``ppv``, ``npv``, ``flag_rate`` (each ``{"value", "ci95"}``, both
        None when the denominator is 0), ``f1``, ``lr_plus``, ``lr_minus`` (None on a zero denominator) and
        ``net_benefit`` (None at threshold 1). Sensitivity targets take the largest distinct score whose
        sensitivity reaches the target, specificity targets the smallest; a target row is omitted when the
        class has no positives or no negatives, or when no score reaches the specificity target.
    """
    y, p, names = _check_inputs(y_true, probs, class_names)
    thresholds = _check_grid(DEFAULT_GRID if grid is None else grid)
    rows: list[dict[str, Any]] = []
    for c in positive_classes(names, positive):
        score, pos = p[:, c], y == c
        neg_sorted, pos_sorted = np.sort(score[~pos]), np.sort(score[pos])
        targets = _target_thresholds(np.unique(score), pos_sorted, neg_sorted)
        t_all = np.concatenate([thresholds, np.array([t for _, t in targets], dtype=np.float64)])
        labels = [None] * len(thresholds) + [label for label, _ in targets]
        rows.extend(_rows(names[c], t_all, labels, pos_sorted, neg_sorted))
    return rows


def delong_auc(
    scores: Sequence[float] | np.ndarray, positive: Sequence[bool] | np.ndarray, ci: float = 0.95
) -> dict[str, Any]:
    """ROC AUC with DeLong's variance (fast midrank algorithm of Sun & Xu 2014).

    Args:
        scores: score per case, higher = more likely positive.
        positive: True for positive cases.
        ci: coverage of the normal-approximation interval (stored under ``ci95``).

    Returns:
        ``{"value", "se", "ci95": [lo, hi], "method": "DeLong"}`` with the interval clipped to [0, 1]. With no
        positives or no negatives everything is None and a ``note`` says why; with a single positive or
        negative the AUC is given but the variance is not (``se``/``ci95`` None, with a ``note``).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive).astype(bool).reshape(-1)
    if scores.shape != positive.shape:
        raise MedlensError(f"scores has {scores.size} entries but positive has {positive.size}")
    if not 0 < ci < 1:
        raise MedlensError(f"ci must be between 0 and 1 (e.g. 0.95), got {ci}")
    if not np.all(np.isfinite(scores)):
        raise MedlensError("scores must be finite (no NaN or inf)")
    x, yneg = scores[positive], scores[~positive]
    m, n = len(x), len(yneg)
    result: dict[str, Any] = {"value": None, "se": None, "ci95": None, "method": "DeLong"}
    if m == 0 or n == 0:
        result["note"] = f"AUC undefined: {m} positive and {n} negative cases; both are needed"
        return result
    tx, ty, tz = _midranks(x), _midranks(yneg), _midranks(np.concatenate([x, yneg]))
    auc = float((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
    result["value"] = auc
    if m < 2 or n < 2:
        result["note"] = f"DeLong variance needs at least 2 positive and 2 negative cases; got {m} and {n}"
        return result
    v10 = (tz[:m] - tx) / n  # placement of each positive: fraction of negatives below it (ties count 1/2)
    v01 = 1.0 - (tz[m:] - ty) / m  # fraction of positives above each negative
    se = float(np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n))
    half = NormalDist().inv_cdf((1 + ci) / 2) * se
    result.update(se=se, ci95=[max(0.0, auc - half), min(1.0, auc + half)])
    return result


def delong_per_class(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    positive: str | None = None,
) -> dict[str, dict[str, Any]]:
    """One-vs-rest :func:`delong_auc` for each class of :func:`positive_classes`, keyed by class name."""
    y, p, names = _check_inputs(y_true, probs, class_names)
    return {names[c]: delong_auc(p[:, c], y == c) for c in positive_classes(names, positive)}


def curves(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    positive: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Precision-recall, ROC, decision and flag-rate curves per positive class, thinned for JSON.

    Args:
        y_true: true class index per case, shape (N,).
        probs: class probabilities, shape (N, C); each row sums to 1.
        class_names: the C class names in column order.
        positive: score only this class (see :func:`positive_classes`).

    Returns:
        ``{class: {"pr": {"precision", "recall", "average_precision"}, "roc": {"fpr", "tpr"}, "decision":
        {"threshold", "net_benefit", "treat_all"}, "flag": {"threshold", "flag_rate", "sensitivity"}}}``.
        Curves hold at most ~200 points. Treat-none has net benefit 0 everywhere. For a class without
        positives or negatives ``pr`` and ``roc`` are None and a ``note`` says why; sensitivities are None
        when there are no positives.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    y, p, names = _check_inputs(y_true, probs, class_names)
    out: dict[str, dict[str, Any]] = {}
    t = _DECISION_GRID
    for c in positive_classes(names, positive):
        score, pos = p[:, c], y == c
        n_total, n_pos = len(score), int(pos.sum())
        pos_sorted, neg_sorted = np.sort(score[pos]), np.sort(score[~pos])
        entry: dict[str, Any] = {"pr": None, "roc": None}
        if 0 < n_pos < n_total:
            precision, recall, _ = precision_recall_curve(pos, score)
            fpr, tpr, _ = roc_curve(pos, score)
            keep_pr, keep_roc = _thin(len(precision)), _thin(len(fpr))
            entry["pr"] = {
                "precision": _floats(precision[keep_pr]),
                "recall": _floats(recall[keep_pr]),
                "average_precision": float(average_precision_score(pos, score)),
            }
            entry["roc"] = {"fpr": _floats(fpr[keep_roc]), "tpr": _floats(tpr[keep_roc])}
        else:
            entry["note"] = f"{n_pos} of {n_total} cases are positive; PR and ROC curves need both classes"
        tp = n_pos - np.searchsorted(pos_sorted, t, side="left")
        fp = len(neg_sorted) - np.searchsorted(neg_sorted, t, side="left")
        odds = t / (1 - t)
        prevalence = n_pos / n_total
        entry["decision"] = {
            "threshold": _floats(t),
            "net_benefit": _floats(tp / n_total - fp / n_total * odds),
            "treat_all": _floats(prevalence - (1 - prevalence) * odds),
        }
        distinct = np.unique(score)
        keep = _thin(len(distinct))
        u = distinct[keep]
        flagged = n_total - np.searchsorted(np.sort(score), u, side="left")
        tp_u = n_pos - np.searchsorted(pos_sorted, u, side="left")
        entry["flag"] = {
            "threshold": _floats(u),
            "flag_rate": _floats(flagged / n_total),
            "sensitivity": _floats(tp_u / n_pos) if n_pos else [None] * len(u),
        }
        out[names[c]] = entry
    return out


def _check_grid(grid: Sequence[float] | np.ndarray) -> np.ndarray:
    g = np.asarray(grid, dtype=np.float64).reshape(-1)
    if g.size == 0 or not np.all(np.isfinite(g)) or g.min() < 0 or g.max() > 1:
        raise MedlensError(f"grid must hold thresholds between 0 and 1 (e.g. 0.1, 0.5, 0.9); got {list(g)}")
    return np.unique(g)


def _target_thresholds(
    distinct: np.ndarray, pos_sorted: np.ndarray, neg_sorted: np.ndarray
) -> list[tuple[str, float]]:
    n_pos, n_neg = len(pos_sorted), len(neg_sorted)
    if n_pos == 0 or n_neg == 0:
        return []
    tp = n_pos - np.searchsorted(pos_sorted, distinct, side="left")  # non-increasing in the threshold
    tn = np.searchsorted(neg_sorted, distinct, side="left")  # non-decreasing in the threshold
    out = []
    for target in SENSITIVITY_TARGETS:
        reach = np.flatnonzero(tp >= target * n_pos - 1e-9)  # never empty: the lowest score flags everyone
        out.append((f"sensitivity>={target:.2f}", float(distinct[reach[-1]])))
    for target in SPECIFICITY_TARGETS:
        reach = np.flatnonzero(tn >= target * n_neg - 1e-9)
        if reach.size:
            out.append((f"specificity>={target:.2f}", float(distinct[reach[0]])))
    return out


def _rows(
    name: str, t: np.ndarray, targets: list[str | None], pos_sorted: np.ndarray, neg_sorted: np.ndarray
) -> list[dict[str, Any]]:
    n_pos, n_neg = len(pos_sorted), len(neg_sorted)
    n_total = n_pos + n_neg
    tp = n_pos - np.searchsorted(pos_sorted, t, side="left")
    fp = n_neg - np.searchsorted(neg_sorted, t, side="left")
    fn, tn = n_pos - tp, n_neg - fp
    pairs = {
        "sensitivity": (tp, np.full_like(tp, n_pos)),
        "specificity": (tn, np.full_like(tn, n_neg)),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
        "flag_rate": (tp + fp, np.full_like(tp, n_total)),
    }
    rates = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for key, (k, n) in pairs.items():
            lo, hi = wilson(k, n)
            rates[key] = (k / n, lo, hi)
        sens, spec = rates["sensitivity"][0], rates["specificity"][0]
        f1 = 2 * tp / (2 * tp + fp + fn)
        lr_plus = np.where(1 - spec > 0, sens / (1 - spec), np.nan)
        lr_minus = np.where(spec > 0, (1 - sens) / spec, np.nan)
        net = np.where(t < 1, tp / n_total - fp / n_total * t / (1 - t), np.nan)
    rows = []
    for i, threshold in enumerate(t):
        row: dict[str, Any] = {
            "class": name,
            "threshold": float(threshold),
            "target": targets[i],
            "tp": int(tp[i]),
            "fp": int(fp[i]),
            "tn": int(tn[i]),
            "fn": int(fn[i]),
        }
        for key in _RATES:
            value, lo, hi = (a[i] for a in rates[key])
            row[key] = {"value": _opt(value), "ci95": None if np.isnan(value) else [float(lo), float(hi)]}
        row.update(
            f1=_opt(f1[i]), lr_plus=_opt(lr_plus[i]), lr_minus=_opt(lr_minus[i]), net_benefit=_opt(net[i])
        )
        rows.append(row)
    return rows


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their mean rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    below = np.cumsum(counts) - counts  # cases strictly below each distinct value
    return (below + (counts + 1) / 2.0)[inverse.reshape(-1)]


def _thin(length: int, limit: int = _MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``limit`` evenly spread points, first and last included."""
    if length <= limit:
        return np.arange(length)
    return np.unique(np.round(np.linspace(0, length - 1, limit)).astype(np.int64))


def _opt(value: float) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else value


def _floats(values: np.ndarray) -> list[float | None]:
    return [_opt(v) for v in np.asarray(values, dtype=np.float64)]
