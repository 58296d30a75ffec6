"""Faithfulness to the model: the deletion curve (the pixels a map ranks highest replaced by a fill value,
a fraction at a time, beside a seeded random order) and its area under the curve."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medlens.errors import MedlensError
from medlens.explaining.pointing import _array, _heatmaps

ORDERS = ("heat", "random")


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
