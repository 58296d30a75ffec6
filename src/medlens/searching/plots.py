"""The search's figures, drawn with matplotlib: parallel coordinates and parameter importance."""

from __future__ import annotations

import math
from pathlib import Path

from medlens.searching.space import LOG_PARAMS


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height))


def _empty(plt, fig, ax, path: Path, text: str) -> Path:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parallel_coordinates(rows: list[dict], params: list[str], monitor: str, path: Path) -> Path:
    """One polyline per completed trial over the normalised parameter axes and the objective, coloured by the
    objective. ``rows``: ``{"value": float, "params": {name: value}}``."""
    plt, fig, ax = _figure(max(6.0, 1.6 * (len(params) + 1)), 4.5)
    rows = [r for r in rows if r.get("value") is not None]
    if not rows:
        return _empty(plt, fig, ax, path, "no completed trial")
    axes = [*params, monitor]
    columns = {name: [r["params"].get(name) for r in rows] for name in params}
    columns[monitor] = [r["value"] for r in rows]
    normalised, ticks = {}, {}
    for name, values in columns.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            log = name in LOG_PARAMS and min(values) > 0
            xs = [math.log10(v) if log else float(v) for v in values]
            ticks[name] = (f"{min(values):.3g}", f"{max(values):.3g}")
        else:
            levels = sorted({str(v) for v in values})
            xs = [float(levels.index(str(v))) for v in values]
            ticks[name] = (levels[0], levels[-1])
        low, high = min(xs), max(xs)
        normalised[name] = [(x - low) / (high - low) if high > low else 0.5 for x in xs]
    cmap = plt.get_cmap("viridis")
    vmin, vmax = min(columns[monitor]), max(columns[monitor])
    span = (vmax - vmin) or 1.0
    for i in sorted(range(len(rows)), key=lambda i: columns[monitor][i]):  # best drawn last, on top
        colour = cmap((columns[monitor][i] - vmin) / span)
        ax.plot(range(len(axes)), [normalised[a][i] for a in axes], color=colour, alpha=0.8, lw=1.4)
    for x, name in enumerate(axes):
        ax.axvline(x, color="0.6", lw=0.8)
        ax.text(x, -0.08, ticks[name][0], ha="center", va="top", fontsize=8)
        ax.text(x, 1.08, ticks[name][1], ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(axes)), axes)
    ax.tick_params(axis="x", pad=18)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.15)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    mappable = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(vmin, vmax))
    fig.colorbar(mappable, ax=ax, label=monitor)
    ax.set_title(f"{len(rows)} completed trials (axes: min at the bottom, max at the top)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def importance(importances: dict[str, float] | None, path: Path, note: str = "") -> Path:
    """Horizontal bars of ``optuna.importance.get_param_importances``; a note where none was computed."""
    plt, fig, ax = _figure(6.0, max(2.5, 0.5 * len(importances or {}) + 1.5))
    if not importances:
        return _empty(plt, fig, ax, path, note or "parameter importance needs two or more completed trials")
    names = list(importances)[::-1]  # most important on top
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA, share of the objective's variance)")
    ax.set_xlim(0, max(1e-9, max(importances.values())) * 1.1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
