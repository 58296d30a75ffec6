"""Intensity clusters: k-means on each image's mean and standard deviation of intensity.

Features are standardised, k-means runs for every k in ``k_range`` (seeded, explicit ``n_init``), and the
k with the best silhouette score is chosen; inertia is kept for the elbow plot. Silhouette is computed on a
seeded sample of at most 3000 images because it is O(n²).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

SEED = 0
SILHOUETTE_SAMPLE = 3000
STRIP = 12  # thumbnails shown per cluster


def intensity_clusters(
    table: pd.DataFrame, k_range=range(2, 9), seed: int = SEED
) -> tuple[dict[str, Any], np.ndarray]:
    """Cluster readable images by (mean, std) intensity.

    Returns:
        The ``clusters`` block of audit.json and, per table row, the cluster index (-1 for unreadable
        rows or when clustering was not possible).
    """
    # deferred: scikit-learn is heavy (~1 s); only the clustering step needs it
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    assign = np.full(len(table), -1, dtype=np.int64)
    ok = np.flatnonzero(table["readable"].to_numpy())
    feats = table.iloc[ok][["mean", "std"]].to_numpy(dtype=np.float64)
    n_distinct = len(np.unique(feats.round(6), axis=0)) if len(feats) else 0
    ks = [int(k) for k in k_range if 2 <= k < n_distinct]
    if not ks:
        return {
            "k": None,
            "reason": f"need at least 3 distinct images, have {n_distinct}",
            "silhouette": {},
            "inertia": {},
            "clusters": [],
        }, assign

    x = StandardScaler().fit_transform(feats)
    inertia, silhouette, labels = {}, {}, {}
    # k-means on 2 features is tiny; OpenMP threads only spin (100x slower on a busy 2-core machine)
    with threadpool_limits(1):
        for k in ks:
            km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
            labels[k] = km.labels_
            inertia[str(k)] = float(km.inertia_)
            silhouette[str(k)] = float(
                silhouette_score(x, km.labels_, sample_size=min(SILHOUETTE_SAMPLE, len(x)), random_state=seed)
            )
    best = max(ks, key=lambda k: (silhouette[str(k)], -k))
    lab = _order_by_brightness(labels[best], feats)
    assign[ok] = lab
    clusters = []
    for c in range(best):
        members = np.flatnonzero(lab == c)
        centre = feats[members].mean(axis=0)
        near = members[np.argsort(np.linalg.norm(feats[members] - centre, axis=1))][:STRIP]
        clusters.append(
            {
                "cluster": c,
                "size": len(members),
                # on the 0-255 scale, as image viewers show intensities
                "mean_intensity": round(float(feats[members, 0].mean() * 255), 2),
                "std_intensity": round(float(feats[members, 1].mean() * 255), 2),
                "examples": [table.iloc[ok[i]]["path"] for i in near],
                "example_rows": [int(table.iloc[ok[i]]["row"]) for i in near],
            }
        )
    return {
        "k": best,
        "features": ["mean", "std"],
        "scaling": "standardised",
        "n_init": 10,
        "seed": seed,
        "silhouette": silhouette,
        "inertia": inertia,
        "clusters": clusters,
    }, assign


def _order_by_brightness(labels: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """Renumber clusters from darkest to brightest so reruns and reports read the same."""
    uniq = np.unique(labels)
    order = sorted(uniq, key=lambda c: feats[labels == c, 0].mean())
    remap = {int(old): new for new, old in enumerate(order)}
    return np.array([remap[int(v)] for v in labels], dtype=np.int64)
