"""Segmentation metrics per case and per patient (MONAI's metric functions underneath).

Empty-mask rule (stated in every report): when prediction and truth are both empty the case is a correct
"nothing here" answer, so Dice = IoU = surface Dice = 1 and HD95 = 0. When exactly one is empty, Dice = IoU =
surface Dice = 0 and HD95 is undefined: it is NaN here (``null`` in summary.json) and such cases are counted
in ``hd95_undefined`` rather than averaged. Every case says which side was empty in ``empty``.

Distances (HD95, the surface-Dice tolerance) are in pixels/voxels, or in mm when ``spacing`` is given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from medlens.errors import MedlensError

CASE_METRICS = ("dice", "iou", "hd95", "surface_dice")


def _binary(array) -> np.ndarray:
    arr = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    return arr.astype(bool) if arr.dtype != bool else arr


def segmentation_case_metrics(
    pred, target, spacing: Sequence[float] | None = None, *, tolerance: float = 1.0
) -> dict:
    """Dice, IoU, HD95 and surface Dice of one binary prediction against its truth.

    Args:
        pred: predicted mask (H, W) or (X, Y, Z), numpy or torch; non-zero is foreground.
        target: true mask, same shape.
        spacing: voxel size per axis (mm); None measures distances in pixels.
        tolerance: surface-Dice tolerance, in the unit of the distances.

    Returns:
        ``{"dice", "iou", "hd95", "surface_dice", "empty"}`` with ``empty`` one of "none", "both",
        "pred", "target"; ``hd95`` is NaN when exactly one mask is empty (see the module's rule).

    Raises:
        MedlensError: shapes differ or spacing has the wrong length.
    """
    p, t = _binary(pred), _binary(target)
    if p.shape != t.shape:
        raise MedlensError(f"prediction shape {p.shape} does not match target shape {t.shape}")
    if spacing is not None and len(spacing) != p.ndim:
        raise MedlensError(f"spacing {tuple(spacing)} needs one value per axis of a {p.ndim}D mask")
    has_p, has_t = bool(p.any()), bool(t.any())
    if not has_p and not has_t:
        return {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "surface_dice": 1.0, "empty": "both"}
    if not has_p or not has_t:
        return {
            "dice": 0.0,
            "iou": 0.0,
            "hd95": math.nan,
            "surface_dice": 0.0,
            "empty": "pred" if not has_p else "target",
        }
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou, compute_surface_dice

    # MONAI wants one-hot (batch, class, *spatial); the foreground alone is the one class here.
    yp, yt = (torch.from_numpy(a[np.newaxis, np.newaxis].astype(np.float32)) for a in (p, t))
    sp = None if spacing is None else [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's internal deprecation notices
        return {
            "dice": float(compute_dice(yp, yt, include_background=True)),
            "iou": float(compute_iou(yp, yt, include_background=True)),
            "hd95": float(
                compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=sp)
            ),
            "surface_dice": float(
                compute_surface_dice(yp, yt, [float(tolerance)], include_background=True, spacing=sp)
            ),
            "empty": "none",
        }


def mean_case_metrics(cases: Sequence[dict]) -> dict:
    """Means of per-case metrics: ``dice``, ``iou``, ``surface_dice`` over all cases, ``hd95`` over the
    cases where it is defined, plus ``n_cases``, ``hd95_undefined`` and ``both_empty`` counts."""
    out: dict = {"n_cases": len(cases)}
    for name in CASE_METRICS:
        values = np.array([c[name] for c in cases], dtype=float)
        defined = values[~np.isnan(values)]
        out[name] = float(defined.mean()) if defined.size else math.nan
    out["hd95_undefined"] = int(sum(math.isnan(c["hd95"]) for c in cases))
    out["both_empty"] = int(sum(c.get("empty") == "both" for c in cases))
    return out


def dice_per_patient(
    pred_slices: Sequence, target_slices: Sequence, patient_ids: Sequence[str]
) -> dict[str, float]:
    """Dice of each patient's whole volume: the slices of a patient pooled together.

    Pooling the voxel counts equals stacking the slices into a volume, and also works when slice sizes
    differ. A patient with no foreground in truth and prediction scores 1 (the empty-mask rule).

    Args:
        pred_slices: predicted masks, one per slice.
        target_slices: true masks, same order and shapes.
        patient_ids: the patient of each slice.

    Returns:
        patient id → Dice, in order of first appearance.
    """
    if not len(pred_slices) == len(target_slices) == len(patient_ids):
        raise MedlensError(
            f"dice_per_patient needs as many predictions ({len(pred_slices)}), targets "
            f"({len(target_slices)}) and patient ids ({len(patient_ids)})"
        )
    sums: dict[str, list[int]] = {}
    for pred, target, patient in zip(pred_slices, target_slices, patient_ids):
        p, t = _binary(pred), _binary(target)
        if p.shape != t.shape:
            raise MedlensError(
                f"patient {patient}: prediction shape {p.shape} does not match target {t.shape}"
            )
        acc = sums.setdefault(str(patient), [0, 0])
        acc[0] += int(np.logical_and(p, t).sum())
        acc[1] += int(p.sum()) + int(t.sum())
    return {pid: 1.0 if total == 0 else 2.0 * inter / total for pid, (inter, total) in sums.items()}


def dice_patient(pred_slices: Sequence, target_slices: Sequence, patient_ids: Sequence[str]) -> float:
    """Mean over patients of the Dice of each patient's stacked volume (Buda et al. 2019's protocol)."""
    per_patient = dice_per_patient(pred_slices, target_slices, patient_ids)
    if not per_patient:
        raise MedlensError("dice_patient needs at least one slice")
    return float(np.mean(list(per_patient.values())))


def patient_bootstrap_ci(
    values: Sequence[float],
    patient_ids: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> list[float] | None:
    """Percentile-bootstrap interval of the mean of per-case ``values``, resampling whole patients.

    Slices (or boxes) of one patient are correlated, so the patient, not the case, is the unit resampled
    (a cluster bootstrap). NaN values (an undefined HD95) are left out of every mean.

    Args:
        values: one value per case (for ``dice_patient``: one per patient).
        patient_ids: the patient of each case.
        n_bootstrap: resamples; 0 gives None.
        seed: the same seed gives the same interval.
        ci: coverage.

    Returns:
        ``[low, high]``, or None with fewer than two patients or resamples.
    """
    values = np.asarray(values, dtype=np.float64)
    _, codes = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
    n_patients = int(codes.max()) + 1 if codes.size else 0
    if n_bootstrap <= 0 or n_patients < 2:
        return None
    defined = ~np.isnan(values)
    sums = np.bincount(codes, weights=np.where(defined, values, 0.0), minlength=n_patients)
    counts = np.bincount(codes, weights=defined.astype(np.float64), minlength=n_patients)
    idx = np.random.default_rng(seed).integers(0, n_patients, size=(int(n_bootstrap), n_patients))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums[idx].sum(1) / counts[idx].sum(1)
    means = means[np.isfinite(means)]
    if means.size < 2:
        return None
    lo, hi = np.percentile(means, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return [float(lo), float(hi)]
