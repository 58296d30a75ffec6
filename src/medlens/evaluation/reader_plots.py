"""Reader-study figure: the model's ROC curve with each reader's operating point on it.

Built like :mod:`medlens.evaluation.plots`: an object-oriented matplotlib ``Figure`` on the Agg canvas (no
``pyplot``), written atomically as a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medlens.errors import MedlensError
from medlens.evaluation.plots import _save


def plot_readers_roc(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    study: dict[str, Any],
    positive: int,
    path: str | Path,
) -> Path:
    """The model's ROC curve for one positive class, with the readers and their majority vote as points.

    Each reader is a marker at (1 - specificity, sensitivity), annotated with their name, with error bars of
    the Wilson 95 % intervals of both; the majority vote is a star. Readers without a defined sensitivity or
    specificity for the class (no cases of it among their reads) are listed as n/a in the legend. The curve is
    drawn from ``y_true``/``probs`` as given (pass only the read cases for a like-for-like comparison); the
    title says how many cases no reader read.

    Args:
        y_true: true class index per case, shape (N,).
        probs: the model's class probabilities, shape (N, C).
        class_names: the C class names in column order.
        study: what :func:`medlens.evaluation.readers.reader_study` returned; ``positive`` must be among the
            positive classes it was computed for.
        positive: index of the positive class.
        path: PNG to write.

    Returns:
        The PNG path.
    """
    from sklearn.metrics import auc, roc_curve  # deferred: scikit-learn is heavy

    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    names = [str(c) for c in class_names]
    if probs.ndim != 2 or probs.shape != (len(y_true), len(names)):
        raise MedlensError(
            f"probs of shape {probs.shape} does not match {len(y_true)} cases x {len(names)} classes"
        )
    if not 0 <= int(positive) < len(names):
        raise MedlensError(f"positive class {positive} is not a class index 0..{len(names) - 1} of {names}")
    cls = names[int(positive)]
    readers = study.get("per_reader") or []
    if readers and cls not in readers[0].get("per_class", {}):
        raise MedlensError(
            f"the reader study has no sensitivity/specificity for class {cls!r}; "
            f"run reader_study with positive=[{int(positive)}]"
        )

    fig = Figure(figsize=(6.5, 6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    is_pos = y_true == int(positive)
    if is_pos.all() or not is_pos.any():
        ax.plot([], [], " ", label="model: ROC undefined (one class only)")
    else:
        fpr, tpr, _ = roc_curve(is_pos, probs[:, int(positive)])
        ax.plot(fpr, tpr, linewidth=1.5, color="C0", label=f"model (AUC = {auc(fpr, tpr):.3f})")

    for i, entry in enumerate(readers):
        point = _operating_point(entry, cls)
        name = str(entry.get("reader", f"reader {i + 1}"))
        if point is None:
            ax.plot([], [], " ", label=f"{name}: n/a (no cases of {cls} or none without)")
            continue
        x, y, xerr, yerr = point
        ax.errorbar(
            [x],
            [y],
            xerr=xerr,
            yerr=yerr,
            fmt="o",
            color=f"C{(i + 1) % 10}",
            capsize=3,
            markersize=6,
            label=name,
        )
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(7, 5), fontsize=8)

    vote = _operating_point(study.get("majority_vote") or {}, cls)
    if vote is not None:
        x, y, xerr, yerr = vote
        ax.errorbar(
            [x],
            [y],
            xerr=xerr,
            yerr=yerr,
            fmt="*",
            color="black",
            capsize=3,
            markersize=13,
            label="majority vote",
        )

    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    title = f"Readers vs model: {cls} (error bars: 95 % CI)"
    missing = int(study.get("cases_without_reader") or 0)
    if missing > 0:
        title += f"\n{missing} case{'' if missing == 1 else 's'} had no reader (n/a)"
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def _operating_point(entry: dict[str, Any], cls: str) -> tuple[float, float, Any, Any] | None:
    """(1 - specificity, sensitivity) and their error-bar extents, or None when either is undefined."""
    stats = (entry.get("per_class") or {}).get(cls) or {}
    sens, spec = stats.get("sensitivity") or {}, stats.get("specificity") or {}
    if sens.get("value") is None or spec.get("value") is None:
        return None
    x, y = 1.0 - spec["value"], sens["value"]
    xerr = yerr = None
    if spec.get("ci95"):
        lo, hi = spec["ci95"]
        xerr = [[max(0.0, x - (1.0 - hi))], [max(0.0, (1.0 - lo) - x)]]
    if sens.get("ci95"):
        lo, hi = sens["ci95"]
        yerr = [[max(0.0, y - lo)], [max(0.0, hi - y)]]
    return x, y, xerr, yerr
