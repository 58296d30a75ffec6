"""Does an attribution map point at the lesion? Measured faithfulness of explanations.

Two questions, each against a baseline that needs no model:

* Localisation: the pointing game (the map's peak lies on the lesion, give or take a few pixels) and the
  share of the map's heat that falls inside the lesion. Baselines: the image centre, a seeded random point
  inside the body (foreground), and a map spread uniformly over the body.
* Faithfulness to the model: the deletion curve. The pixels the map ranks highest are replaced by a fill
  value, a fraction at a time, and the model's probability of the target class is recorded. A map that found
  what the model relies on makes the probability fall early (a low area under the curve); the baseline is
  the same curve with pixels deleted in a seeded random order.

Conventions (repeated in the report's ``method_notes``):

* The peak is the argmax of the map, the first in raster order on ties.
* "Inside the lesion, give or take ``dilate`` pixels" is inside the mask dilated by a disc of radius
  ``dilate`` (the pixels within Euclidean distance ``dilate`` of the lesion; ``dilate=0``: the mask itself).
* Negative heat is clipped to zero before shares of heat are taken; a map with no positive heat has no share
  (NaN), and such slices are left out of means and intervals.
* Intervals are percentile cluster bootstraps over patients (:func:`patient_bootstrap_ci`): the slices of a
  patient are resampled together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medlens.errors import MedlensError
from medlens.evaluation.seg_metrics import patient_bootstrap_ci
from medlens.explaining.deletion import ORDERS, deletion_auc, deletion_curve
from medlens.explaining.pointing import (
    _heatmaps,
    _masks,
    dilate_masks,
    disc,
    energy_in_mask,
    peak_points,
    point_baselines,
    pointing_hits,
    uniform_energy_in_mask,
)

__all__ = [
    "ORDERS",
    "deletion_auc",
    "deletion_curve",
    "dilate_masks",
    "disc",
    "energy_in_mask",
    "localisation_report",
    "peak_points",
    "point_baselines",
    "pointing_hits",
    "uniform_energy_in_mask",
]


def _json_float(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _metric(values: np.ndarray, patient_ids: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return {
        "value": float(defined.mean()) if defined.size else None,
        "ci95": patient_bootstrap_ci(values, patient_ids, n_bootstrap=n_bootstrap, seed=seed),
    }


def _method_notes(dilate: int, steps: int | None, n_bootstrap: int, seed: int) -> str:
    notes = [
        "Pointing game: the map's peak (argmax, first in raster order on ties) lies in the lesion mask",
        f"dilated by a disc of radius {int(dilate)} px (Euclidean distance <= {int(dilate)}).",
        "Energy: share of the map's heat (negatives clipped to 0) inside the undilated mask;",
        "maps without positive heat are left out.",
        "Baselines: the centre pixel (H//2, W//2); one seeded random point per slice, uniform over the",
        "foreground (the whole image where it is empty); a map uniform over the foreground.",
    ]
    if steps is not None:
        notes += [
            f"Deletion: the top-ranked fractions 0, 1/{int(steps)}, ..., 1 of the pixels (by heat, ties in",
            "raster order) set to 0.0 (the mean of normalised images) in every channel; the model's",
            "probability of the target class; trapezoid AUC over [0, 1] (lower = the map found what the",
            "model relies on). Baseline: the same with pixels deleted in a seeded random order.",
        ]
    notes += [
        "Values are means over slices; ci95: percentile cluster bootstrap over patients",
        f"({int(n_bootstrap)} resamples, seed {int(seed)}); None with fewer than two patients.",
    ]
    return " ".join(notes)


def localisation_report(
    heatmaps,
    masks,
    foreground,
    patient_ids: Sequence[str],
    *,
    images=None,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    dilate: int = 3,
    steps: int = 10,
) -> dict[str, Any]:
    """Localisation and faithfulness of attribution maps, each beside its baseline, with patient intervals.

    Args:
        heatmaps: attribution maps (N, H, W) of the target class.
        masks: lesion masks (N, H, W); every slice must hold some lesion.
        foreground: body/brain masks (N, H, W) for the random-point and uniform-map baselines.
        patient_ids: the patient of each slice: the unit of the bootstrap.
        images: normalised images (N, C, H, W); with ``predict``, adds the deletion metrics.
        predict: batch (B, C, H, W) -> probability of the target class (B,), as in :func:`deletion_curve`.
        n_bootstrap: patient resamples per interval (0: every ``ci95`` is None).
        seed: seed of the bootstrap, the random point and the random deletion order.
        dilate: pointing-game tolerance in pixels (disc radius).
        steps: deletion fractions after 0.

    Returns:
        JSON-ready dict: ``pointing_game``, ``energy_in_mask``, ``baseline_centre``, ``baseline_random``,
        ``energy_in_mask_uniform`` and, with images and predict, ``deletion_auc`` and ``deletion_auc_random``,
        each ``{"value": mean over slices, "ci95": [lo, hi] | None}``; ``n_slices``, ``n_patients``,
        ``dilate_px``, ``method_notes`` and ``per_slice`` (``[{"index", "patient_id", "hit", "energy",
        "deletion_auc"}]``, None where not computed or undefined).

    Raises:
        MedlensError: shapes or lengths disagree, only one of images/predict is given, or some masks are
            empty (their number is named).
    """
    h = _heatmaps(heatmaps)
    m = _masks(masks, h.shape)
    fg = _masks(foreground, h.shape, "foreground")
    pids = np.asarray([str(p) for p in patient_ids])
    if pids.shape != (len(h),):
        raise MedlensError(f"{pids.size} patient ids given for {len(h)} slices")
    if len(h) == 0:
        raise MedlensError("localisation_report needs at least one slice")
    empty = int((~m.reshape(len(m), -1).any(1)).sum())
    if empty:
        raise MedlensError(
            f"{empty} of {len(m)} slices have an empty lesion mask; pass only slices with a lesion "
            "(the pointing game is undefined without one)"
        )
    if (images is None) != (predict is None):
        raise MedlensError("deletion metrics need both images and predict (or neither)")

    hits = pointing_hits(h, m, dilate)
    energy = energy_in_mask(h, m)
    base = point_baselines(m, fg, dilate, seed)
    uniform = uniform_energy_in_mask(m, fg)

    def metric(values) -> dict[str, Any]:
        return _metric(values, pids, n_bootstrap, seed)

    report: dict[str, Any] = {
        "pointing_game": metric(hits.astype(np.float64)),
        "energy_in_mask": metric(energy),
    }
    auc = None
    if images is not None:
        auc = deletion_auc(deletion_curve(images, h, predict, steps=steps, order="heat", seed=seed))
        auc_random = deletion_auc(deletion_curve(images, h, predict, steps=steps, order="random", seed=seed))
        report["deletion_auc"] = metric(auc)
        report["deletion_auc_random"] = metric(auc_random)
    report.update(
        {
            "baseline_centre": metric(base["centre"].astype(np.float64)),
            "baseline_random": metric(base["random"].astype(np.float64)),
            "energy_in_mask_uniform": metric(uniform),
            "n_slices": len(h),
            "n_patients": len(np.unique(pids)),
            "dilate_px": int(dilate),
            "method_notes": _method_notes(dilate, steps if auc is not None else None, n_bootstrap, seed),
        }
    )
    report["per_slice"] = [
        {
            "index": i,
            "patient_id": str(pids[i]),
            "hit": bool(hits[i]),
            "energy": _json_float(energy[i]),
            "deletion_auc": None if auc is None else _json_float(auc[i]),
        }
        for i in range(len(h))
    ]
    return report
