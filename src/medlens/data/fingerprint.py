"""A dataset's fingerprint: what the plan (``medlens plan``, :mod:`medlens.training.plans`) decides from.

Counts come from the whole manifest; sizes, channels and intensities from a seeded sample of decoded images
(nnU-Net's dataset fingerprint, for 2D images and volumes alike). Unreadable files in the sample are counted,
not fatal: training reports and skips them later.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medlens.data.manifest import Manifest, grouped_patients
from medlens.io.images import read_image
from medlens.io.volumes import is_nifti_file, read_volume

#: Decoded images per fingerprint (volumes: a quarter of it); counts always cover every case.
SAMPLE = 96


def fingerprint(manifest: Manifest, *, sample: int = SAMPLE, seed: int = 0) -> dict[str, Any]:
    """Measure ``manifest``: counts per split and class, imbalance, patients, 2D/3D, image size (median and
    spread), channels, intensity range and (3D) voxel spacing.

    Args:
        manifest: the cases (with a ``label`` column for classification).
        sample: images decoded to measure size, channels and intensities (seeded, spread over the classes).
        seed: the sample's seed.
    """
    df = manifest.df
    splits = df["split"].replace("", "train")
    pool = df[splits.isin(["train", "val"])]
    out: dict[str, Any] = {
        "n_cases": len(df),
        "n_by_split": {str(k): int(v) for k, v in splits.value_counts().sort_index().items()},
        "n_labelled_pool": len(pool),
        "n_patients": int(pool["patient_id"].nunique()),
        "grouped_by_patient": grouped_patients(pool["patient_id"]) is not None,
        "has_val_split": bool((splits == "val").any()),
    }
    if manifest.has_labels and "mask" not in df.columns:
        counts = pool["label"].astype(str).value_counts()
        out["classes"] = {str(k): int(v) for k, v in counts.sort_index().items()}
        out["imbalance"] = round(float(counts.max() / max(1, counts.min())), 2) if len(counts) else None
    paths = [manifest.resolve(p) for p in pool["image"]]
    if not paths:
        return out
    rng = np.random.default_rng(seed)
    volumes = is_nifti_file(paths[0].split("::")[0])
    take = min(len(paths), max(4, sample // 4) if volumes else sample)
    chosen = sorted(rng.choice(len(paths), size=take, replace=False).tolist())
    shapes, spacings, colour, lows, highs, unreadable = [], [], [], [], [], 0
    for i in chosen:
        try:
            if volumes:
                array, _, spacing = read_volume(paths[i])
                spacings.append(spacing)
            else:
                array = read_image(paths[i])
        except Exception:
            unreadable += 1
            continue
        array = np.asarray(array)
        spatial = array.shape[1:4] if volumes else array.shape[:2]  # volumes are read channel-first
        shapes.append(spatial)
        if not volumes:
            colour.append(_distinct_channels(array))
        finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
        if finite.size:
            lows.append(float(np.percentile(finite, 0.5)))
            highs.append(float(np.percentile(finite, 99.5)))
    out["dims"] = 3 if volumes else 2
    out["sampled"] = len(chosen)
    out["unreadable_in_sample"] = unreadable
    if shapes:
        arr = np.asarray(shapes, dtype=float)
        out["shape_median"] = [int(v) for v in np.median(arr, axis=0)]
        out["shape_p10"] = [int(v) for v in np.percentile(arr, 10, axis=0)]
        out["shape_p90"] = [int(v) for v in np.percentile(arr, 90, axis=0)]
        out["min_side_median"] = int(np.median(arr.min(axis=1)))
        out["intensity_p0_5"] = round(float(np.median(lows)), 3) if lows else None
        out["intensity_p99_5"] = round(float(np.median(highs)), 3) if highs else None
    if colour:
        out["colour_share"] = round(float(np.mean(colour)), 3)
    if spacings:
        out["spacing_median"] = [round(float(v), 3) for v in np.median(np.asarray(spacings), axis=0)]
    return out


def _distinct_channels(array: np.ndarray) -> bool:
    """True for a multi-channel image whose channels differ (colour or stacked sequences), False for grey
    stored as RGB."""
    if array.ndim != 3 or array.shape[-1] < 3:
        return False
    a = array[..., :3].astype(np.float32)
    spread = max(float(a.std()), 1e-6)
    return float(np.abs(a[..., 0] - a[..., 1]).mean() + np.abs(a[..., 1] - a[..., 2]).mean()) > 0.05 * spread
