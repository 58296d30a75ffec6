"""Geometry outliers: images whose width or height is far from the rest.

Two rules. ``3sigma`` (the classic ``find_outliers`` rule): beyond mean ± 3 standard deviations. ``mad``: the
Iglewicz–Hoaglin modified z-score ``0.6745 · |x − median| / MAD`` above ``k`` (3.5 by default), which a
handful of huge images cannot mask the way they inflate the standard deviation. When more than half the
images share one size the MAD is 0; the mean absolute deviation (× 1.2533) stands in, as the same authors
recommend.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MAD_K = 3.5


def rule_bounds(values: np.ndarray, mad_k: float = MAD_K) -> dict[str, tuple[float, float] | None]:
    """Inlier intervals per rule (``None`` when the rule cannot fire, e.g. all values equal)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 3:
        return {"3sigma": None, "mad": None}
    mean, std = v.mean(), v.std()
    sigma = (mean - 3 * std, mean + 3 * std) if std > 0 else None
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    # modified z = 0.6745 (x - med) / MAD, i.e. the MAD scaled to a normal's sigma; MeanAD fallback if 0
    scale = mad / 0.6745 if mad > 0 else 1.2533 * np.mean(np.abs(v - med))
    robust = (med - mad_k * scale, med + mad_k * scale) if scale > 0 else None
    return {"3sigma": sigma, "mad": robust}


def size_outliers(table: pd.DataFrame, mad_k: float = MAD_K) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Outlier list for audit.json and the bounds used (for the report's scatter plot).

    Each outlier is ``{"path", "size": [w, h], "rule": "3sigma" | "mad" | "3sigma+mad", "rules": [...],
    "dimensions": ["width", ...], "split", "label"}``.
    """
    ok = table[table["readable"]]
    bounds = {dim: rule_bounds(ok[dim].to_numpy(), mad_k) for dim in ("width", "height")}
    out = []
    for r in ok.itertuples(index=False):
        fired = [
            (rule, dim)
            for rule in ("3sigma", "mad")
            for dim in ("width", "height")
            if bounds[dim][rule] is not None
            and not bounds[dim][rule][0] <= getattr(r, dim) <= bounds[dim][rule][1]
        ]
        rules = list(dict.fromkeys(rule for rule, _ in fired))
        dims = list(dict.fromkeys(dim for _, dim in fired))
        if rules:
            out.append(
                {
                    "path": r.path,
                    "size": [int(r.width), int(r.height)],
                    "rule": "+".join(rules),
                    "rules": rules,
                    "dimensions": dims,
                    "split": r.split,
                    "label": getattr(r, "label", ""),
                    "row": int(r.row),
                }
            )
    info = {dim: {rule: (list(b) if b else None) for rule, b in bounds[dim].items()} for dim in bounds}
    info["mad_k"] = mad_k
    return out, info
