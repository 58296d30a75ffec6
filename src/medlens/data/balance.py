"""Class balance: counts, imbalance ratio and class weights (shared by audit and train)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_weights(labels: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
    """Inverse-frequency weights ``n / (k * count)`` ("balanced"), 1.0 on average over cases.

    Classes absent from ``labels`` get weight 0 (they contribute nothing to the loss).
    """
    labels = np.asarray(list(labels), dtype=object)
    n, k = len(labels), len(classes)
    out = {}
    for c in classes:
        count = int((labels == c).sum())
        out[str(c)] = float(n / (k * count)) if count else 0.0
    return out


def imbalance_ratio(labels: Sequence[str]) -> float:
    """Largest class count divided by smallest (1.0 = perfectly balanced)."""
    _, counts = np.unique(np.asarray(list(labels), dtype=object), return_counts=True)
    return float(counts.max() / counts.min()) if len(counts) else float("nan")
