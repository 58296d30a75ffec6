"""Percentile-bootstrap machinery of the classification metrics: case (or patient) resampling, every metric
of all resamples at once from weighted counts, the weighted rank AUC, and the percentile interval.
"""

from __future__ import annotations

import numpy as np

from medlens.errors import MedlensError

# Resample indices are drawn in chunks of at most this many (resamples x cases), ~32 MB of int64.
_CHUNK = 4_000_000
_MIN_VALID_RESAMPLES = 2


def _calibration_inputs(y_true, probs, n_bins) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bin_of = np.digitize(conf, inner_edges, right=True)
    return conf, correct, bin_of


def _row_bincount(keys: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """``np.bincount`` of every row of ``keys`` (b, N) at once -> (b, size)."""
    offsets = np.arange(keys.shape[0])[:, None] * size
    flat = np.bincount(
        (keys + offsets).ravel(),
        weights=None if weights is None else weights.ravel(),
        minlength=keys.shape[0] * size,
    )
    return flat.reshape(keys.shape[0], size)


def _bootstrap(y_true, probs, n_bootstrap, seed, n_bins, with_auc, codes=None) -> dict[str, np.ndarray]:
    """Metric values of ``n_bootstrap`` resamples of cases, or of the groups ``codes`` (0..G-1 per case)
    when given (NaN where a metric is undefined)."""
    if int(n_bootstrap) < 0:
        raise MedlensError(f"n_bootstrap must be 0 or more, got {n_bootstrap}")
    if n_bootstrap == 0:
        return {}
    rng = np.random.default_rng(seed)
    n = len(y_true)
    units = n if codes is None else int(codes.max()) + 1
    chunk = max(1, _CHUNK // max(n, units))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_bootstrap, chunk):
        draws = rng.integers(0, units, size=(min(chunk, n_bootstrap - start), units))
        counts = _row_bincount(draws, units).astype(np.float64)
        weights = counts if codes is None else counts[:, codes]
        for name, vals in _resample_metrics(weights, y_true, probs, n_bins, with_auc).items():
            parts.setdefault(name, []).append(vals)
    return {name: np.concatenate(vals) for name, vals in parts.items()}


def _resample_metrics(weights, y_true, probs, n_bins, with_auc) -> dict[str, np.ndarray]:
    """All metrics for each row of case weights (b, N) (how often each case was drawn); a row of ones gives
    the point values."""
    n, n_classes = probs.shape
    weights = np.asarray(weights, dtype=np.float64)
    rows = (weights.shape[0], n)
    y_pred = probs.argmax(axis=1)
    cm = _row_bincount(np.broadcast_to(y_true * n_classes + y_pred, rows), n_classes**2, weights).reshape(
        -1, n_classes, n_classes
    )
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
    total = weights.sum(axis=1)
    out = {
        "accuracy": tp.sum(axis=1) / total,
        "balanced_accuracy": np.nanmean(recall, axis=1),  # classes absent from the resample are skipped
        "macro_f1": f1.mean(axis=1),
        "weighted_f1": (f1 * support).sum(axis=1) / total,
    }
    conf, correct, bin_of = _calibration_inputs(y_true, probs, n_bins)
    bins = np.broadcast_to(bin_of, rows)
    conf_sum = _row_bincount(bins, n_bins, weights * conf)
    correct_sum = _row_bincount(bins, n_bins, weights * correct)
    out["ece"] = np.abs(correct_sum - conf_sum).sum(axis=1) / total
    if with_auc:
        if n_classes == 2:
            out["auc"] = _weighted_auc(probs[:, 1], y_true == 1, weights)
        else:  # one-vs-rest macro; NaN (skipped) when any class is missing from the resample
            out["auc_ovr"] = np.mean(
                [_weighted_auc(probs[:, c], y_true == c, weights) for c in range(n_classes)], axis=0
            )
    return out


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC (ties count one half) per row of case weights (b, N); NaN if a side is empty."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    pos = positive[order]
    w_pos = np.add.reduceat(w * pos, starts, axis=1)  # weight of positives per distinct score
    w_neg = np.add.reduceat(w * ~pos, starts, axis=1)
    neg_below = np.cumsum(w_neg, axis=1) - w_neg
    wins = (w_pos * (neg_below + 0.5 * w_neg)).sum(axis=1)
    pairs = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def _interval(samples: np.ndarray | None, ci: float) -> list[float] | None:
    if samples is None:
        return None
    valid = samples[np.isfinite(samples)]
    if valid.size < _MIN_VALID_RESAMPLES:
        return None
    lo, hi = np.percentile(valid, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return [float(lo), float(hi)]
