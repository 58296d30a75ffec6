"""Agreement statistics of a reader study: Cohen's kappa, Fleiss' kappa, the majority vote, and the agreement
of readers with the model on cases without ground truth.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from medlens.errors import MedlensError


def model_agreement(reads: Sequence[tuple[str, str, str]], class_names: Sequence[str]) -> dict[str, Any]:
    """Agreement of readers with the model on cases without ground truth (a live worklist): the share of
    reads that match the model's call and Cohen's kappa, over all reads and per reader.

    Args:
        reads: ``(reader, model_label, reader_label)`` per read.
        class_names: the model's classes (kappa is over all of them).

    Returns:
        ``{"n", "agreement", "kappa", "by_reader": {reader: {"n", "agreement", "kappa"}}}``; kappa is None
        where undefined (fewer than 2 reads, or chance agreement 1).
    """
    names = [str(c) for c in class_names]
    index = {c: i for i, c in enumerate(names)}
    rows = [(r, index[m], index[x]) for r, m, x in reads if m in index and x in index]

    def block(items: list[tuple[str, int, int]]) -> dict[str, Any]:
        a = np.array([m for _, m, _ in items], dtype=int)
        b = np.array([x for _, _, x in items], dtype=int)
        return {
            "n": len(items),
            "agreement": round(float((a == b).mean()), 4) if len(items) else None,
            "kappa": None if not names else _kappa(a, b, len(names)),
        }

    readers = sorted({r for r, _, _ in rows})
    return {**block(rows), "by_reader": {r: block([x for x in rows if x[0] == r]) for r in readers}}


def _kappa(a: np.ndarray, b: np.ndarray, n_classes: int) -> float | None:
    """Cohen's kappa over all classes; None where undefined (fewer than 2 cases, or chance agreement 1)."""
    if len(a) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns before returning NaN for an undefined kappa
        value = float(cohen_kappa_score(a, b, labels=np.arange(n_classes)))
    return value if np.isfinite(value) else None


def _category_counts(reads: np.ndarray, n_classes: int) -> np.ndarray:
    """(raters, cases) labels -> (cases, categories) table of how many raters chose each category."""
    n_cases = reads.shape[1]
    keys = np.arange(n_cases)[None, :] * n_classes + reads
    return np.bincount(keys.ravel(), minlength=n_cases * n_classes).reshape(n_cases, n_classes)


def _fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa from a (cases, categories) count table with the same number of raters per case.

    None where undefined: no cases, fewer than 2 raters, or every rating in one category.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise MedlensError("Fleiss' kappa needs the same number of raters for every case")
    m = raters[0]
    if m < 2:
        return None
    agreement = ((counts * (counts - 1)).sum(axis=1) / (m * (m - 1))).mean()  # mean P_i
    p_j = counts.sum(axis=0) / counts.sum()
    chance = float((p_j**2).sum())
    if chance >= 1.0 - 1e-12:
        return None
    return float((agreement - chance) / (1.0 - chance))


def _majority(reads: np.ndarray, n_classes: int) -> tuple[np.ndarray, int]:
    """Most voted class per case (column) among the readers who read it (-1 = no read); ties go to the
    lowest class index. Returns the votes and the number of tied cases."""
    n_cases = reads.shape[1]
    ok = reads >= 0
    keys = (np.arange(n_cases)[None, :] * n_classes + reads)[ok]
    counts = np.bincount(keys, minlength=n_cases * n_classes).reshape(n_cases, n_classes)
    top = counts.max(axis=1, keepdims=True)
    ties = int(((counts == top).sum(axis=1) > 1).sum())
    return counts.argmax(axis=1), ties
