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
from scipy import ndimage

from medlens.errors import MedlensError
from medlens.evaluation.seg_metrics import patient_bootstrap_ci

ORDERS = ("heat", "random")


def _array(values, dtype=None) -> np.ndarray:
    arr = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _heatmaps(heatmaps) -> np.ndarray:
    h = _array(heatmaps, np.float64)
    if h.ndim != 3:
        raise MedlensError(f"heat maps must have shape (N, H, W), got {h.shape}")
    if not np.isfinite(h).all():
        raise MedlensError(f"{int((~np.isfinite(h)).sum())} heat-map values are NaN or infinite")
    return h


def _masks(masks, shape: tuple[int, ...], name: str = "masks") -> np.ndarray:
    m = _array(masks)
    m = m.astype(bool) if m.dtype != bool else m
    if m.shape != shape:
        raise MedlensError(f"{name} shape {m.shape} does not match the heat maps' shape {shape}")
    return m


def disc(radius: int) -> np.ndarray:
    """Boolean (2r+1, 2r+1) disc: the pixels within Euclidean distance ``radius`` of the centre."""
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= r * r


def dilate_masks(masks: np.ndarray, dilate: int) -> np.ndarray:
    """Each (H, W) slice of boolean ``masks`` (N, H, W) dilated by a disc of radius ``dilate`` pixels."""
    if int(dilate) != dilate or dilate < 0:
        raise MedlensError(f"dilate must be a whole number of pixels >= 0, got {dilate}")
    masks = np.asarray(masks, dtype=bool)
    if dilate == 0 or masks.size == 0:
        return masks.copy()
    # A structuring element one slice thick dilates every slice at once and never across slices.
    return ndimage.binary_dilation(masks, structure=disc(int(dilate))[np.newaxis])


def peak_points(heatmaps) -> np.ndarray:
    """(N, 2) integer ``(row, col)`` of each map's peak: the argmax, first in raster order on ties."""
    h = _heatmaps(heatmaps)
    flat = np.argmax(h.reshape(h.shape[0], -1), axis=1)
    return np.stack(np.unravel_index(flat, h.shape[1:]), axis=1)


def _hits_at(points: np.ndarray, masks: np.ndarray, dilate: int) -> np.ndarray:
    grown = dilate_masks(masks, dilate)
    return grown[np.arange(len(points)), points[:, 0], points[:, 1]]


def pointing_hits(heatmaps, masks, dilate: int = 3) -> np.ndarray:
    """The pointing game: whether each heat map's peak lies on the lesion, give or take ``dilate`` pixels.

    Args:
        heatmaps: attribution maps (N, H, W), finite.
        masks: lesion masks (N, H, W); non-zero is lesion.
        dilate: tolerance in pixels: the mask is dilated by a disc of this radius (Euclidean distance
            <= ``dilate``); 0 asks for the peak inside the mask itself.

    Returns:
        Boolean (N,): True where the peak (argmax, first in raster order on ties) is in the dilated mask.

    Raises:
        MedlensError: shapes disagree, a map holds NaN/inf, or ``dilate`` is negative.
    """
    h = _heatmaps(heatmaps)
    m = _masks(masks, h.shape)
    return _hits_at(peak_points(h), m, dilate)


def energy_in_mask(heatmaps, masks) -> np.ndarray:
    """Share of each map's heat that lies inside the (undilated) lesion mask.

    Negative heat is clipped to zero first, so the share is of the positive evidence.

    Args:
        heatmaps: attribution maps (N, H, W), finite.
        masks: lesion masks (N, H, W).

    Returns:
        Float (N,) in [0, 1]; NaN where a map has no positive heat.
    """
    h = np.clip(_heatmaps(heatmaps), 0.0, None)
    m = _masks(masks, h.shape)
    total = h.reshape(len(h), -1).sum(1)
    inside = np.where(m, h, 0.0).reshape(len(h), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def uniform_energy_in_mask(masks, foreground) -> np.ndarray:
    """Baseline of :func:`energy_in_mask`: the share a map spread evenly over the foreground puts in the
    mask, ``|mask ∩ foreground| / |foreground|`` (the whole image where the foreground is empty)."""
    m = np.asarray(masks, dtype=bool)
    fg = _masks(foreground, m.shape, "foreground")
    fg = np.where(fg.reshape(len(fg), -1).any(1)[:, None, None], fg, True)
    return (m & fg).reshape(len(m), -1).sum(1) / fg.reshape(len(fg), -1).sum(1)


def point_baselines(masks, foreground, dilate: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Pointing-game hits of two points chosen without looking at any image: what a map must beat.

    Args:
        masks: lesion masks (N, H, W).
        foreground: body/brain masks (N, H, W), e.g. from
            :func:`medlens.explaining.foreground.foreground_mask`.
        dilate: tolerance in pixels, as in :func:`pointing_hits` (disc of this radius).
        seed: seed of the random points; the same seed gives the same points.

    Returns:
        ``{"centre", "random", "random_points"}``: ``centre`` (N,) bool hits of the centre pixel
        ``(H // 2, W // 2)``; ``random`` (N,) bool hits of one point per slice drawn uniformly among the
        slice's foreground pixels (among all pixels where the foreground is empty); ``random_points`` (N, 2)
        the ``(row, col)`` of those points.
    """
    m = _array(masks)
    m = m.astype(bool) if m.dtype != bool else m
    if m.ndim != 3:
        raise MedlensError(f"masks must have shape (N, H, W), got {m.shape}")
    fg = _masks(foreground, m.shape, "foreground")
    n, height, width = m.shape
    flat = fg.reshape(n, -1)
    flat = np.where(flat.any(1)[:, None], flat, True)
    counts = flat.sum(1)
    pick = np.minimum(np.floor(np.random.default_rng(seed).random(n) * counts), counts - 1).astype(np.int64)
    # The pick-th foreground pixel of each slice: the first where the running count exceeds pick.
    index = np.argmax(np.cumsum(flat, axis=1) > pick[:, None], axis=1)
    random_points = np.stack(np.unravel_index(index, (height, width)), axis=1)
    centre = np.tile([height // 2, width // 2], (n, 1))
    grown = dilate_masks(m, dilate)
    rows = np.arange(n)
    return {
        "centre": grown[rows, centre[:, 0], centre[:, 1]],
        "random": grown[rows, random_points[:, 0], random_points[:, 1]],
        "random_points": random_points,
    }


def _fill_array(fill, shape: tuple[int, ...]) -> np.ndarray:
    n, c, h, w = shape
    f = _array(fill, np.float32)
    if f.ndim == 0:
        return f.reshape(1, 1, 1, 1)
    if f.ndim == 1 and f.size == c:
        return f.reshape(1, c, 1, 1)
    if f.shape == (c, h, w):
        return f[np.newaxis]
    if f.shape == (n, c, h, w):
        return f
    raise MedlensError(
        f"fill must be a number, one value per channel ({c},), an image ({c}, {h}, {w}) or one image per "
        f"slice ({n}, {c}, {h}, {w}); got shape {f.shape}"
    )


def deletion_curve(
    images,
    heatmaps,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    steps: int = 10,
    fill: float | np.ndarray = 0.0,
    batch_size: int = 64,
    order: str = "heat",
    seed: int = 0,
) -> np.ndarray:
    """The model's probability as the pixels a heat map ranks highest are deleted, a fraction at a time.

    At step ``j`` (``j = 0 .. steps``) the ``floor(j * H * W / steps)`` top-ranked pixels of each slice are
    replaced by ``fill`` in every channel, so step 0 is the untouched image and the last step the fill alone.
    Pixels are ranked by descending heat (raster order breaks ties) or, with ``order="random"`` (the
    baseline), in a seeded random order. All slices x steps are sent to ``predict`` in batches.

    Args:
        images: normalised images (N, C, H, W).
        heatmaps: attribution maps (N, H, W), finite.
        predict: maps a float32 batch (B, C, H, W) to the probability of each image's target class, (B,).
        steps: number of deletion fractions after 0 (fractions 0, 1/steps, ..., 1).
        fill: the value deleted pixels take: a number (0.0 is the dataset mean of normalised images), one per
            channel (C,), an image (C, H, W), or one image per slice (N, C, H, W), e.g. a blurred copy.
        batch_size: images per call of ``predict``.
        order: ``"heat"`` or ``"random"``.
        seed: seed of the random order.

    Returns:
        Float (N, steps + 1): the probability after each deletion fraction.

    Raises:
        MedlensError: bad shapes or arguments, or ``predict`` returns the wrong number of values.
    """
    x = _array(images, np.float32)
    h = _heatmaps(heatmaps)
    if x.ndim != 4 or x.shape[:1] + x.shape[2:] != h.shape:
        raise MedlensError(f"images {x.shape} must be (N, C, H, W) matching heat maps (N, H, W) {h.shape}")
    if int(steps) != steps or steps < 1:
        raise MedlensError(f"steps must be a whole number >= 1, got {steps}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise MedlensError(f"batch_size must be a whole number >= 1, got {batch_size}")
    if order not in ORDERS:
        raise MedlensError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    steps, batch_size = int(steps), int(batch_size)
    n, _, height, width = x.shape
    fills = _fill_array(fill, x.shape)
    n_pixels = height * width
    if order == "heat":
        ranking = np.argsort(-h.reshape(n, -1), axis=1, kind="stable")
    else:
        ranking = np.argsort(np.random.default_rng(seed).random((n, n_pixels)), axis=1)
    # rank[i, p]: the position of pixel p in slice i's deletion order (0 = deleted first).
    rank = np.empty_like(ranking)
    np.put_along_axis(rank, ranking, np.arange(n_pixels)[np.newaxis], axis=1)
    rank = rank.reshape(n, height, width)
    kept = (np.arange(steps + 1) * n_pixels) // steps
    slice_of = np.repeat(np.arange(n), steps + 1)
    step_of = np.tile(np.arange(steps + 1), n)
    out = np.empty(n * (steps + 1), dtype=np.float64)
    for start in range(0, out.size, batch_size):
        s, j = slice_of[start : start + batch_size], step_of[start : start + batch_size]
        deleted = rank[s] < kept[j][:, None, None]
        f = fills if fills.shape[0] == 1 else fills[s]
        batch = np.where(deleted[:, np.newaxis], f, x[s]).astype(np.float32, copy=False)
        probs = _array(predict(batch), np.float64).reshape(-1)
        if probs.size != len(s):
            raise MedlensError(f"predict returned {probs.size} values for a batch of {len(s)} images")
        out[start : start + len(s)] = probs
    return out.reshape(n, steps + 1)


def deletion_auc(curves) -> np.ndarray:
    """Trapezoid area under each deletion curve (N, steps + 1), with x evenly spaced over [0, 1].

    Lower is better: the probability fell as soon as the map's top pixels were gone.
    """
    y = _array(curves, np.float64)
    if y.ndim != 2 or y.shape[1] < 2:
        raise MedlensError(f"deletion curves must have shape (N, steps + 1) with steps >= 1, got {y.shape}")
    steps = y.shape[1] - 1
    return (y[:, :-1] + y[:, 1:]).sum(1) / (2.0 * steps)


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
