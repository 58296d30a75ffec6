"""Figures for clinical reading of a classifier: flag rate, precision-recall and decision curves.

Drawn like :mod:`medlens.evaluation.plots`: matplotlib's object-oriented ``Figure`` on the Agg canvas, written
atomically as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medlens.errors import MedlensError
from medlens.evaluation.plots import _save


def plot_operating_curves(curves: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Three panels per figure: sensitivity vs flag rate, precision-recall, and the decision curve.

    Args:
        curves: what :func:`medlens.evaluation.operating_points.curves` returned (class -> curves).
        path: PNG to write.

    Returns:
        The PNG path.
    """
    if not curves:
        raise MedlensError("no curves to plot; compute them with medlens.evaluation.operating_points.curves")
    fig = Figure(figsize=(16, 5))
    flag_ax, pr_ax, dc_ax = fig.subplots(1, 3)
    top = 0.0
    for i, (name, entry) in enumerate(curves.items()):
        colour = f"C{i % 10}"
        flag = entry.get("flag") or {}
        rate, sens = _array(flag.get("flag_rate")), _array(flag.get("sensitivity"))
        if rate.size and np.isfinite(sens).any():
            flag_ax.plot(rate, sens, color=colour, linewidth=1.5, label=name)
        pr = entry.get("pr")
        if pr:
            ap = pr.get("average_precision")
            label = f"{name} (AP = {ap:.3f})" if ap is not None else name
            pr_ax.plot(
                _array(pr["recall"]), _array(pr["precision"]), color=colour, linewidth=1.5, label=label
            )
        else:
            pr_ax.plot([], [], " ", label=f"{name}: undefined (one class only)")
        decision = entry.get("decision") or {}
        t = _array(decision.get("threshold"))
        if t.size:
            net, treat_all = _array(decision.get("net_benefit")), _array(decision.get("treat_all"))
            dc_ax.plot(t, net, color=colour, linewidth=1.5, label=f"{name}: model")
            dc_ax.plot(t, treat_all, color=colour, linewidth=1, linestyle="--", label=f"{name}: treat all")
            finite = np.concatenate([net[np.isfinite(net)], treat_all[np.isfinite(treat_all)]])
            top = max(top, float(finite.max()) if finite.size else 0.0)
    flag_ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1, label="random flagging")
    flag_ax.set_xlim(0, 1)
    flag_ax.set_ylim(0, 1.01)
    flag_ax.set_xlabel("flag rate (fraction of cases flagged)")
    flag_ax.set_ylabel("sensitivity")
    flag_ax.set_title("(a) Sensitivity vs flag rate")
    flag_ax.legend(loc="lower right", fontsize=8)
    pr_ax.set_xlim(0, 1)
    pr_ax.set_ylim(0, 1.01)
    pr_ax.set_xlabel("recall (sensitivity)")
    pr_ax.set_ylabel("precision (PPV)")
    pr_ax.set_title("(b) Precision-recall")
    pr_ax.legend(loc="lower left", fontsize=8)
    dc_ax.axhline(0.0, color="black", linewidth=1, label="treat none")
    dc_ax.set_xlim(0, 1)
    dc_ax.set_ylim(-0.05, top + 0.05)
    dc_ax.set_xlabel("threshold probability")
    dc_ax.set_ylabel("net benefit")
    dc_ax.set_title("(c) Decision curve")
    dc_ax.legend(loc="upper right", fontsize=7)
    for ax in (flag_ax, pr_ax, dc_ax):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def _array(values: Any) -> np.ndarray:
    if values is None:
        return np.array([], dtype=np.float64)
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
