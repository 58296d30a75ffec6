"""Figures for audit.html, returned as PNG data URIs (matplotlib, Agg backend, nothing written to disk)."""

from __future__ import annotations

import base64
import io
from typing import Any

import pandas as pd


def _figure(width: float = 4.6, height: float = 3.4):
    import matplotlib  # deferred: heavy, only the HTML report's figures need it

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # deferred: after the Agg backend is chosen

    return plt.subplots(figsize=(width, height), dpi=100)


def _to_uri(fig) -> str:
    import matplotlib.pyplot as plt  # deferred: heavy, see _figure

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def size_scatter(table: pd.DataFrame, outliers: list[dict[str, Any]], bounds: dict[str, Any]) -> str:
    """Width vs height of every readable image; shaded mean ± 3σ band, dashed median ± k·MAD limits."""
    fig, ax = _figure()
    ok = table[table["readable"]]
    flagged = {o["row"] for o in outliers}
    is_out = ok["row"].isin(flagged).to_numpy()
    ax.scatter(ok["width"][~is_out], ok["height"][~is_out], s=8, alpha=0.4, label="images")
    if is_out.any():
        ax.scatter(ok["width"][is_out], ok["height"][is_out], s=18, color="crimson", label="outliers")
    for dim, span, line in (("width", ax.axvspan, ax.axvline), ("height", ax.axhspan, ax.axhline)):
        sigma, mad = bounds[dim].get("3sigma"), bounds[dim].get("mad")
        if sigma:
            span(*sigma, color="tab:blue", alpha=0.08, label="mean ± 3σ" if dim == "width" else None)
        if mad:
            for i, v in enumerate(mad):
                line(
                    v,
                    color="tab:green",
                    ls="--",
                    lw=1,
                    label=f"median ± {bounds['mad_k']}·MAD" if dim == "width" and i == 0 else None,
                )
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.set_title("Image sizes")
    ax.legend(fontsize=7, loc="best")
    return _to_uri(fig)


def k_curve(values: dict[str, float], chosen: int | None, ylabel: str, title: str) -> str:
    """Line plot of a per-k score (elbow of inertia, silhouette), the chosen k marked."""
    fig, ax = _figure(3.6, 2.8)
    ks = [int(k) for k in values]
    ax.plot(ks, list(values.values()), marker="o")
    if chosen is not None:
        ax.axvline(chosen, color="crimson", ls="--", lw=1, label=f"chosen k = {chosen}")
        ax.legend(fontsize=7)
    ax.set_xlabel("k")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _to_uri(fig)


def intensity_scatter(table: pd.DataFrame) -> str:
    """Mean vs std of intensity (0-255 scale) coloured by cluster."""
    fig, ax = _figure()
    ok = table[table["readable"] & (table["cluster"] >= 0)]
    for c in sorted(ok["cluster"].unique()):
        part = ok[ok["cluster"] == c]
        ax.scatter(part["mean"] * 255, part["std"] * 255, s=8, alpha=0.5, label=f"cluster {c}")
    ax.set_xlabel("mean intensity (0-255)")
    ax.set_ylabel("std of intensity (0-255)")
    ax.set_title("Intensity clusters")
    if len(ok):
        ax.legend(fontsize=7, markerscale=2)
    return _to_uri(fig)


def thumb_uri(data: bytes | None) -> str:
    """JPEG bytes as a data URI ('' when missing)."""
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii") if data else ""


def all_figures(table: pd.DataFrame, summary: dict[str, Any]) -> dict[str, str]:
    """Every figure the report shows, by name."""
    figs = {}
    if table["readable"].any():
        figs["sizes"] = size_scatter(table, summary["size_outliers"], summary["size_rules"])
    clusters = summary["clusters"]
    if clusters.get("k"):
        figs["elbow"] = k_curve(clusters["inertia"], clusters["k"], "inertia", "Elbow: k-means inertia")
        figs["silhouette"] = k_curve(clusters["silhouette"], clusters["k"], "silhouette", "Silhouette by k")
        figs["intensity"] = intensity_scatter(table)
    return figs
