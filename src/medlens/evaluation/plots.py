"""Evaluation figures as PNG files.

Figures are built with matplotlib's object-oriented ``Figure`` (Agg canvas) rather than ``pyplot``: no global
figure registry to leak or close, no GUI backend, and safe inside the web server's threads. Every function
writes its PNG atomically and returns the path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from medlens.errors import MedlensError
from medlens.utils.files import atomic_write_bytes

_DPI = 110
_MAX_ANNOTATED_CLASSES = 25


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    normalize: bool = True,
) -> Path:
    """Confusion matrix: rows = true class, columns = predicted; counts annotated.

    Args:
        cm: square matrix of counts.
        class_names: names of the rows/columns.
        path: PNG to write.
        normalize: colour by the fraction of each true class (row) instead of raw counts.
    """
    cm = np.asarray(cm, dtype=np.float64)
    names = [str(c) for c in class_names]
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise MedlensError(f"confusion matrix of shape {cm.shape} does not match {len(names)} class names")
    rows = cm.sum(axis=1, keepdims=True)
    fraction = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    colour = fraction if normalize else cm
    side = max(4.0, 0.55 * len(names) + 2.5)
    fig = Figure(figsize=(side + 1, side))
    ax = fig.add_subplot()
    image = ax.imshow(colour, cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    fig.colorbar(image, ax=ax, label="fraction of true class" if normalize else "cases")
    if len(names) <= _MAX_ANNOTATED_CLASSES:
        threshold = 0.5 if normalize else cm.max() / 2
        for (i, j), count in np.ndenumerate(cm):
            text = f"{int(count)}\n{fraction[i, j]:.0%}" if normalize else f"{int(count)}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if colour[i, j] > threshold else "black",
            )
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix" + (" (colour: row fraction)" if normalize else ""))
    return _save(fig, path)


def plot_roc(
    y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: str | Path
) -> Path:
    """ROC curves: binary -> one curve of the second (positive) class; multiclass -> one-vs-rest per class."""
    from sklearn.metrics import auc, roc_curve  # deferred: scikit-learn is heavy

    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    names = [str(c) for c in class_names]
    if probs.ndim != 2 or probs.shape != (len(y_true), len(names)):
        raise MedlensError(
            f"probs of shape {probs.shape} does not match {len(y_true)} cases x {len(names)} classes"
        )
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    classes = [1] if len(names) == 2 else range(len(names))
    for c in classes:
        positive = y_true == c
        label = f"{names[c]} vs {names[0]}" if len(names) == 2 else f"{names[c]} vs rest"
        if positive.all() or not positive.any():
            ax.plot([], [], " ", label=f"{label}: undefined (one class only)")
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{label} (AUC = {auc(fpr, tpr):.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title("ROC curve" + ("" if len(names) == 2 else "s (one-vs-rest)"))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_reliability(calibration_dict: dict[str, Any], path: str | Path) -> Path:
    """Reliability diagram (accuracy vs confidence per bin) over a histogram of confidences.

    Args:
        calibration_dict: what :func:`medlens.evaluation.metrics.calibration` returned, or
            ``summary["calibration"]``.
        path: PNG to write.
    """
    bins = calibration_dict.get("bins") or []
    if not bins:
        raise MedlensError(
            "calibration data has no bins; compute it with medlens.evaluation.metrics.calibration"
        )
    lower = np.array([b["lower"] for b in bins])
    width = np.array([b["upper"] - b["lower"] for b in bins])
    filled = [i for i, b in enumerate(bins) if b["count"]]
    fig = Figure(figsize=(5.5, 6))
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax.bar(
        lower[filled],
        [bins[i]["accuracy"] for i in filled],
        width=width[filled],
        align="edge",
        edgecolor="black",
        alpha=0.75,
        label="accuracy in bin",
    )
    ax.plot(
        [bins[i]["confidence"] for i in filled],
        [bins[i]["accuracy"] for i in filled],
        "o-",
        color="C3",
        markersize=4,
        linewidth=1,
        label="accuracy at the bin's mean confidence",
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ece = calibration_dict.get("ece")
    ax.set_title("Reliability diagram" + (f" (ECE = {ece:.3f})" if ece is not None else ""))
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(lower, [b["count"] for b in bins], width=width, align="edge", edgecolor="black", color="C7")
    hist.set_xlim(0, 1)
    hist.set_xlabel("top-class confidence")
    hist.set_ylabel("cases")
    return _save(fig, path)


def plot_history(history_df: pd.DataFrame, path: str | Path) -> Path:
    """Training curves: losses, other metrics and the learning rate (log scale), whichever columns exist.

    Args:
        history_df: one row per epoch; columns such as ``epoch``, ``train_loss``, ``val_loss``,
            ``val_accuracy``, ``lr``. Non-numeric columns are ignored.
        path: PNG to write.
    """
    numeric = history_df.select_dtypes("number")
    x = numeric["epoch"] if "epoch" in numeric else pd.Series(np.arange(1, len(numeric) + 1))
    rest = [c for c in numeric.columns if c not in ("epoch", "step", "time", "seconds")]
    groups = {
        "loss": [c for c in rest if "loss" in c],
        "learning rate": [c for c in rest if c == "lr" or c.startswith(("lr", "learning_rate"))],
    }
    groups["metric"] = [c for c in rest if c not in groups["loss"] + groups["learning rate"]]
    panels = [(title, cols) for title, cols in groups.items() if cols]
    if not panels or numeric.empty:
        raise MedlensError(
            f"history has no numeric columns to plot (columns: {list(history_df.columns)}); "
            "expected e.g. epoch, train_loss, val_loss, val_accuracy, lr"
        )
    fig = Figure(figsize=(5.5 * len(panels), 4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, cols) in zip(axes, panels):
        for col in cols:
            ok = numeric[col].notna().to_numpy()
            ax.plot(x[ok], numeric[col][ok], marker="o", markersize=3, label=col)
        if title == "learning rate" and (numeric[cols] > 0).all().all():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_learning_curve(df: pd.DataFrame, path: str | Path) -> Path:
    """Metric against the fraction of training data used, with its confidence band.

    Args:
        df: one row per (fraction[, metric][, model]) with columns ``fraction`` (0-1) and ``value``; optional
            ``n_train``, ``ci_low``/``ci_high`` (drawn as a band), ``metric`` and ``model`` (one line each).
        path: PNG to write.
    """
    missing = [c for c in ("fraction", "value") if c not in df.columns]
    if missing:
        raise MedlensError(f"learning-curve table lacks column(s) {missing}; has {list(df.columns)}")
    keys = [c for c in ("model", "metric") if c in df.columns]
    groups = df.groupby(keys, sort=False) if keys else [((), df)]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for key, part in groups:
        part = part.sort_values("fraction")
        x = 100 * part["fraction"].to_numpy(dtype=float)
        label = " / ".join(str(k) for k in (key if isinstance(key, tuple) else (key,))) or "value"
        ax.plot(x, part["value"], marker="o", label=label)
        if {"ci_low", "ci_high"} <= set(part.columns):
            ax.fill_between(x, part["ci_low"].astype(float), part["ci_high"].astype(float), alpha=0.2)
    ticks = df.drop_duplicates("fraction").sort_values("fraction")
    labels = [f"{100 * f:.0f}%" for f in ticks["fraction"]]
    if "n_train" in ticks.columns:
        labels = [f"{lab}\nn={int(n)}" for lab, n in zip(labels, ticks["n_train"])]
    ax.set_xticks(100 * ticks["fraction"].to_numpy(dtype=float), labels)
    metrics = df["metric"].unique() if "metric" in df.columns else []
    ax.set_ylabel(str(metrics[0]) if len(metrics) == 1 else "metric value")
    ax.set_xlabel("fraction of the training set used")
    ax.set_title("Learning curve (band: 95 % CI)" if "ci_low" in df.columns else "Learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_compare(table_df: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars: one group per metric, one bar per run, CI as error bars.

    Args:
        table_df: the table from :func:`medlens.evaluation.compare.compare`: a ``run`` column and, per metric,
            columns ``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high``.
        path: PNG to write.
    """
    metrics = compare_metric_columns(table_df)
    if not metrics:
        raise MedlensError(
            "comparison table has no metric columns (<metric>, <metric>_ci_low, <metric>_ci_high)"
        )
    values = table_df[metrics].astype(float)
    unit = [m for m in metrics if values[m].dropna().between(0, 1).all()]
    panels = [p for p in (unit, [m for m in metrics if m not in unit]) if p]
    runs = [str(r) for r in (table_df.get("run", table_df.index))]
    fig = Figure(figsize=(max(6.0, 1.2 * len(metrics) * max(1, len(runs)) ** 0.5 + 3), 4.5 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False)[:, 0])
    width = 0.8 / max(1, len(runs))
    for ax, names in zip(axes, panels):
        x = np.arange(len(names))
        for i, run in enumerate(runs):
            row = table_df.iloc[i]
            val = np.array([_num(row[m]) for m in names])
            low = np.array([_num(row.get(f"{m}_ci_low")) for m in names])
            high = np.array([_num(row.get(f"{m}_ci_high")) for m in names])
            err = np.nan_to_num(np.vstack([val - low, high - val]), nan=0.0).clip(min=0)
            ax.bar(
                x + (i - (len(runs) - 1) / 2) * width,
                np.nan_to_num(val),
                width,
                yerr=err,
                capsize=3,
                label=run,
            )
        ax.set_xticks(x, names, rotation=20, ha="right")
        if names is unit:
            ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[0].set_title("Metrics per run (error bars: 95 % CI)")
    return _save(fig, path)


def compare_metric_columns(table_df: pd.DataFrame) -> list[str]:
    """Metric names of a comparison table: columns that have ``_ci_low`` and ``_ci_high`` companions."""
    cols = set(table_df.columns)
    return [c for c in table_df.columns if f"{c}_ci_low" in cols and f"{c}_ci_high" in cols]


def summary_figures(
    summary: dict[str, Any], out_dir: str | Path, skip: Sequence[str] = ()
) -> dict[str, Path]:
    """Write the standard figures of a classification summary (confusion matrix, ROC, reliability).

    Args:
        summary: a summary.json dict; figures are drawn from it alone.
        out_dir: folder for ``confusion_matrix.png``, ``roc.png``, ``reliability.png``.
        skip: figure names not to draw (e.g. those the caller already has).

    Returns:
        Figure name -> PNG path, in display order; empty for tasks other than classification.
    """
    from medlens.evaluation.metrics import arrays_from_summary  # deferred: metrics imports scikit-learn

    out_dir = Path(out_dir)
    figures: dict[str, Path] = {}
    if summary.get("task") != "classification" or not summary.get("class_names"):
        return figures
    names = summary["class_names"]
    if "confusion_matrix" not in skip and summary.get("confusion_matrix"):
        figures["confusion_matrix"] = plot_confusion_matrix(
            summary["confusion_matrix"], names, out_dir / "confusion_matrix.png"
        )
    if "roc" not in skip and summary.get("cases"):
        y_true, probs, names = arrays_from_summary(summary)
        figures["roc"] = plot_roc(y_true, probs, names, out_dir / "roc.png")
    if "reliability" not in skip and (summary.get("calibration") or {}).get("bins"):
        figures["reliability"] = plot_reliability(summary["calibration"], out_dir / "reliability.png")
    return figures


def plot_examples(panels: Sequence[tuple[str, np.ndarray]], path: str | Path) -> Path:
    """A row of RGB pictures with titles (segmentation contours or detection boxes already drawn in).

    Args:
        panels: ``(title, uint8 RGB array (H, W, 3))`` per picture, e.g. best, median and worst case.
        path: PNG to write.
    """
    if not panels:
        raise MedlensError("plot_examples needs at least one (title, image) panel")
    fig = Figure(figsize=(3.6 * len(panels), 3.9))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, rgb) in zip(axes, panels):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    return _save(fig, path)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _save(fig: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())
