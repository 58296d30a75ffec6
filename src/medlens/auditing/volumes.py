"""The audit's scan of NIfTI volumes: the same per-image record as a 2D image, plus depth and voxel spacing.

A volume ``(C, X, Y, Z)`` is measured as follows: ``width``/``height`` are the in-plane sizes X and Y,
``depth`` is Z, ``spacing_x/y/z`` the voxel size in mm. The exact hash covers every voxel of every channel.
The perceptual hash, structure signature and thumbnail come from the central axial slice of the first
channel, windowed to its 1st-99th percentiles and shown with anterior up, so near-duplicate search, clusters
and the report's thumbnails work as for 2D images. Mean and standard deviation are taken over the whole
first channel after the same [0, 1] scaling :func:`~medlens.data.hashing.to_gray01` applies to images.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from medlens.auditing.geometry import MAD_K, rule_bounds
from medlens.auditing.scan import thumbnail
from medlens.data.hashing import fingerprint, pixel_hash, to_gray01
from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.volumes import read_volume

#: Extra per-row features of a volume audit (defaults for unreadable rows).
VOLUME_FEATURES: dict[str, Any] = {"depth": 0, "spacing_x": np.nan, "spacing_y": np.nan, "spacing_z": np.nan}
SPACING_DECIMALS = 3  # spacings equal to the micrometre count as one (header float noise is not an outlier)
OUTLIER_DIMS = ("spacing_x", "spacing_y", "spacing_z", "depth")


def scan_volume(path: str) -> dict[str, Any]:
    """Read one NIfTI volume and return the audit record of :func:`medlens.auditing.scan.scan_image` plus
    ``depth`` and ``spacing_x/y/z``.

    Never raises for a bad file: the record has ``readable=False`` and a ``reason`` instead.
    """

    try:
        volume, _, spacing = read_volume(path)
    except UnreadableImageError as err:
        return {"readable": False, "reason": err.reason, "reason_kind": err.kind}
    except MedlensError as err:  # e.g. a 2D or 5D NIfTI
        return {"readable": False, "reason": str(err), "reason_kind": "undecodable"}
    channels, width, height, depth = volume.shape
    if min(width, height, depth) < 1:
        return {
            "readable": False,
            "reason": f"empty volume (array shape {volume.shape})",
            "reason_kind": "undecodable",
        }
    first = volume[0]
    scaled = to_gray01(first.reshape(width, height * depth))  # 2-D view: same scaling rule as for images
    plane = central_slice(first)
    gray = plane.astype(np.float32) / np.float32(255)
    ph, signature = fingerprint(gray)
    return {
        "readable": True,
        "reason": "",
        "reason_kind": "",
        "width": int(width),
        "height": int(height),
        "depth": int(depth),
        "channels": int(channels),
        "dtype": str(volume.dtype),
        "bits": int(volume.dtype.itemsize * 8),
        "mode": "volume" if channels == 1 else f"{channels}-channel volume",
        "gray_rgb": False,
        "mean": float(scaled.mean()),
        "std": float(scaled.std()),
        "pixel_hash": pixel_hash(volume),
        "phash": ph,
        "signature": signature,
        "thumb": thumbnail(plane, gray),
        **{f"spacing_{axis}": float(s) for axis, s in zip("xyz", spacing)},
    }


def central_slice(volume: np.ndarray) -> np.ndarray:
    """The middle axial slice of an (X, Y, Z) volume as a uint8 image (rows = Y with anterior up).

    Intensities are windowed to the slice's 1st-99th percentiles, which suits CT (HU) and MRI alike.
    """
    plane = np.asarray(volume[:, :, volume.shape[2] // 2], dtype=np.float64)
    plane = np.nan_to_num(plane, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = np.percentile(plane, (1, 99))
    if hi <= lo:
        lo, hi = float(plane.min()), float(plane.max())
    scaled = (plane - lo) / (hi - lo) if hi > lo else np.zeros_like(plane)
    return np.ascontiguousarray(np.flipud((np.clip(scaled, 0, 1) * 255).round().astype(np.uint8).T))


def volume_summary(table: pd.DataFrame, mad_k: float = MAD_K) -> dict[str, Any]:
    """The ``volumes`` block of audit.json: spacing and shape census, spacing/depth outliers.

    Outliers use the two rules of :mod:`medlens.auditing.geometry` (mean ± 3σ and median ± k·MAD) on each of
    spacing_x, spacing_y, spacing_z and depth; each is ``{"path", "case_id", "spacing": [x, y, z], "depth",
    "shape": [x, y, z], "rule", "rules", "dimensions", "split", "row"}``.
    """
    ok = table[table["readable"] & (table["depth"] > 0)].copy()
    for axis in "xyz":
        ok[f"spacing_{axis}"] = ok[f"spacing_{axis}"].round(SPACING_DECIMALS)
    spacings = Counter(_spacing_text(r) for r in ok.itertuples(index=False))
    shapes = Counter(f"{r.width}x{r.height}x{r.depth}" for r in ok.itertuples(index=False))
    bounds = {dim: rule_bounds(ok[dim].to_numpy(), mad_k) for dim in OUTLIER_DIMS}
    outliers = []
    for r in ok.itertuples(index=False):
        fired = [
            (rule, dim)
            for rule in ("3sigma", "mad")
            for dim in OUTLIER_DIMS
            if bounds[dim][rule] is not None
            and not bounds[dim][rule][0] <= getattr(r, dim) <= bounds[dim][rule][1]
        ]
        if fired:
            rules = list(dict.fromkeys(rule for rule, _ in fired))
            outliers.append(
                {
                    "path": r.path,
                    "case_id": r.case_id,
                    "spacing": [float(r.spacing_x), float(r.spacing_y), float(r.spacing_z)],
                    "depth": int(r.depth),
                    "shape": [int(r.width), int(r.height), int(r.depth)],
                    "rule": "+".join(rules),
                    "rules": rules,
                    "dimensions": list(dict.fromkeys(dim for _, dim in fired)),
                    "split": r.split,
                    "row": int(r.row),
                }
            )
    return {
        "n_volumes": len(ok),
        "n_spacings": len(spacings),
        "spacings": dict(spacings.most_common(20)),
        "n_shapes": len(shapes),
        "shapes": dict(shapes.most_common(20)),
        **{dim: _range(ok[dim]) for dim in OUTLIER_DIMS},
        "spacing_outliers": outliers,
        "spacing_rules": {
            dim: {rule: (list(b) if b else None) for rule, b in bounds[dim].items()} for dim in bounds
        }
        | {"mad_k": mad_k},
    }


def _spacing_text(r) -> str:
    return "x".join(f"{float(v):g}" for v in (r.spacing_x, r.spacing_y, r.spacing_z))


def _range(col: pd.Series) -> dict[str, float]:
    if col.empty:
        return {}
    return {"min": float(col.min()), "median": float(col.median()), "max": float(col.max())}
