"""Localisation of attribution maps: the pointing game (the peak lies on the lesion, give or take a few
pixels), the share of heat inside the lesion, and their model-free baselines (the image centre, a seeded
random foreground point, a map uniform over the foreground).

Conventions: :mod:`medlens.explaining.faithfulness`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medlens.errors import MedlensError


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
