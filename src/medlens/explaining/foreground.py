"""The body (or brain) inside an image: Otsu's threshold, holes filled, the largest component kept.

Used to ask whether an attribution map's heat lies on the patient at all, and to draw the random-point
baseline of the pointing game inside the body rather than in the air around it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def otsu_threshold(gray: np.ndarray) -> float:
    """Otsu's threshold of a grayscale image (256-bin histogram of its range)."""
    g = np.asarray(gray, dtype=np.float64).ravel()
    lo, hi = float(g.min()), float(g.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(g, bins=256, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Boolean (H, W) foreground of an image (H, W), (C, H, W) or (H, W, C); the whole image when the
    threshold finds nothing (a flat image)."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=0) if a.shape[0] <= 4 and a.shape[0] < a.shape[-1] else a.mean(axis=-1)
    mask = a > otsu_threshold(a)
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=1))
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.ones(a.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def heat_inside(heat: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of a map's total heat that lies inside ``mask`` (None for an all-zero map)."""
    heat = np.clip(np.asarray(heat, dtype=np.float64), 0, None)
    total = heat.sum()
    return None if total <= 0 else float(heat[np.asarray(mask, dtype=bool)].sum() / total)
