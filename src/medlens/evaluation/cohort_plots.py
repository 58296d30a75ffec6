"""The fairness heat-map of a cohort audit (:func:`medlens.evaluation.cohorts.cohort_analysis`) as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from medlens.evaluation.plots import _save

_RATIO_RANGE = (0.5, 2.0)
_OUTLINE = {"flag": "#ff8c00", "critical": "#d62728"}
_CENSORED = "#d9d9d9"


def plot_fairness_heatmap(cohorts: dict[str, Any], path: str | Path) -> Path | None:
    """A heat-map table of metric ratios to each column's reference group.

    Rows are ``column=group (n)`` (the reference marked ``ref``), columns the metrics. A cell's colour is its
    ratio on a log scale centred on 1, clipped to [0.5, 2] (green above the reference, purple below); its text
    the metric value and ``×ratio``. Flagged cells are outlined orange, critical ones red; censored rows are
    grey with "censored: < min_cell patients".

    Args:
        cohorts: what ``cohort_analysis`` returned (or its ``"columns"`` mapping).
        path: PNG to write.

    Returns:
        The PNG's path, or None when there is no group or no metric to plot.
    """
    columns = cohorts.get("columns", cohorts) if isinstance(cohorts, dict) else {}
    min_cell = cohorts.get("min_cell", 10) if isinstance(cohorts, dict) else 10
    rows = [(display, col, g) for display, col in columns.items() for g in col.get("groups", [])]
    metrics: list[str] = []
    for _, _, group in rows:
        metrics += [m for m in group.get("metrics", {}) if m not in metrics]
    if not rows or not metrics:
        return None

    ratio = np.full((len(rows), len(metrics)), np.nan)
    for i, (_, _, group) in enumerate(rows):
        for j, metric in enumerate(metrics):
            value = (group.get("ratio") or {}).get(metric)
            if value is not None and value > 0:
                ratio[i, j] = np.clip(value, *_RATIO_RANGE)

    fig = Figure(figsize=(max(5.0, 1.5 * len(metrics) + 3.5), max(2.5, 0.42 * len(rows) + 1.4)))
    ax = fig.add_subplot()
    cmap = _cmap()
    image = ax.imshow(
        np.ma.masked_invalid(ratio),
        cmap=cmap,
        norm=LogNorm(*_RATIO_RANGE),
        aspect="auto",
        interpolation="none",
    )
    colorbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("ratio to the reference group (log scale)")
    bands = cohorts.get("bands") or {} if isinstance(cohorts, dict) else {}
    inner = [
        bands.get("critical_below", 1 / 1.5),
        *bands.get("ok", [0.8, 1.25]),
        bands.get("critical_above", 1.5),
    ]
    inner = sorted({round(float(v), 2) for v in inner if _RATIO_RANGE[0] < v < _RATIO_RANGE[1]} | {1.0})
    colorbar.set_ticks([0.5, *inner, 2], labels=["≤0.5", *(f"{v:g}" for v in inner), "≥2"])
    colorbar.ax.minorticks_off()

    labels = []
    for i, (display, col, group) in enumerate(rows):
        is_ref = group["name"] == col.get("reference")
        labels.append(f"{display}={group['name']} ({group['n']})" + (" ref" if is_ref else ""))
        if group.get("censored"):
            ax.add_patch(Rectangle((-0.5, i - 0.5), len(metrics), 1, color=_CENSORED, zorder=2))
            ax.text(
                (len(metrics) - 1) / 2,
                i,
                f"censored: < {min_cell} patients",
                ha="center",
                va="center",
                fontsize=8,
                zorder=3,
            )
            continue
        for j, metric in enumerate(metrics):
            dark = np.isfinite(ratio[i, j]) and abs(np.log2(ratio[i, j])) > 0.7
            ax.text(
                j,
                i,
                _cell_text(group, metric),
                ha="center",
                va="center",
                fontsize=7.5,
                color="white" if dark else "black",
                zorder=3,
            )
            level = (group.get("flag") or {}).get(metric)
            if level in _OUTLINE:
                ax.add_patch(
                    Rectangle(
                        (j - 0.46, i - 0.46), 0.92, 0.92, fill=False, edgecolor=_OUTLINE[level], linewidth=2.2
                    )
                )
    start = 0
    for col in list(columns.values())[:-1]:  # separate the cohort columns
        start += len(col.get("groups", []))
        ax.axhline(start - 0.5, color="black", linewidth=1)
    ax.set_xticks(np.arange(len(metrics)), metrics, rotation=20, ha="right")
    ax.set_yticks(np.arange(len(rows)), labels, fontsize=8)
    ax.set_xlim(-0.5, len(metrics) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_title(
        "Metrics by cohort (cell: value, ×ratio to ref; outline orange = flag, red = critical)", fontsize=9
    )
    return _save(fig, path)


def _cmap():
    from matplotlib import colormaps

    # purple below the reference, green above; the pale middle keeps the orange/red outlines visible
    base = colormaps["PRGn"]
    return ListedColormap(base(np.linspace(0.12, 0.88, 256)), name="ratio").with_extremes(bad="white")


def _cell_text(group: dict[str, Any], metric: str) -> str:
    value = (group.get("metrics", {}).get(metric) or {}).get("value")
    ratio = (group.get("ratio") or {}).get(metric)
    text = "—" if value is None else (f"{value:.3f}" if abs(value) < 100 else f"{value:.4g}")
    return text + (f"\n×{ratio:.2f}" if ratio is not None else "")
