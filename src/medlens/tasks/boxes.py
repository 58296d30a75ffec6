"""Bounding boxes: from masks, IoU, the GIoU loss, and the detection metrics ``iou_mean`` and ``iou50_rate``.

A box is ``(x0, y0, x1, y1)`` with x along columns and y along rows, in pixel-edge coordinates: pixel
(row r, column c) covers [c, c+1) × [r, r+1), so a box holding columns 3..5 has x0 = 3, x1 = 6 and its
width is x1 - x0. Any unit works (pixels or fractions of the image) as long as both boxes use the same.

Missing boxes (``None``: nothing predicted, or no object in the truth) follow the empty-mask rule of
segmentation: both missing scores IoU 1, exactly one missing scores IoU 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medlens.errors import MedlensError

Box = tuple[float, float, float, float]


def mask_to_box(mask) -> tuple[int, int, int, int] | None:
    """Box of the largest connected component of a 2D mask (8-connected), or None for an empty mask.

    Args:
        mask: (H, W) array; non-zero is foreground.

    Returns:
        ``(x0, y0, x1, y1)`` in pixel-edge coordinates (x1, y1 exclusive), or None.
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise MedlensError(f"mask_to_box needs a 2D mask, got shape {mask.shape}")
    labels, n = ndimage.label(mask != 0, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def _as_boxes(boxes, name: str) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.shape[-1:] != (4,):
        raise MedlensError(f"{name} must hold boxes of 4 numbers (x0, y0, x1, y1), got shape {arr.shape}")
    return arr


def box_iou(a, b) -> float | np.ndarray:
    """Intersection over union of paired boxes.

    Args:
        a, b: one box each ``(x0, y0, x1, y1)``, or arrays of shape (N, 4) compared row by row.
            Inverted boxes (x1 < x0) count as empty.

    Returns:
        A float for single boxes, else an array (N,). Two empty boxes give 0.
    """
    a, b = _as_boxes(a, "a"), _as_boxes(b, "b")
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou) if iou.ndim == 0 else iou


def _area(box: np.ndarray) -> np.ndarray:
    return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(box[..., 3] - box[..., 1], 0, None)


def giou_loss(pred, target, reduction: str = "mean", eps: float = 1e-7):
    """Generalised IoU loss ``1 - GIoU`` (Rezatofighi et al. 2019) for paired boxes, in torch.

    GIoU = IoU - (area of the smallest enclosing box not covered by the union) / (enclosing area); unlike
    IoU it still has a gradient when the boxes do not overlap. Predicted corners are ordered first, so a
    regression head that swaps x0 and x1 still gets a meaningful loss.

    Args:
        pred: (N, 4) predicted boxes.
        target: (N, 4) true boxes.
        reduction: "mean", "sum" or "none".
        eps: keeps the divisions finite for degenerate boxes.

    Returns:
        The loss (a scalar tensor, or (N,) with ``reduction="none"``), in [0, 2].
    """
    import torch

    if reduction not in ("mean", "sum", "none"):
        raise MedlensError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if pred.shape != target.shape or pred.shape[-1] != 4:
        raise MedlensError(
            f"giou_loss needs two (N, 4) box tensors of one shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    px0, px1 = torch.minimum(pred[..., 0], pred[..., 2]), torch.maximum(pred[..., 0], pred[..., 2])
    py0, py1 = torch.minimum(pred[..., 1], pred[..., 3]), torch.maximum(pred[..., 1], pred[..., 3])
    tx0, ty0, tx1, ty1 = target.unbind(-1)
    inter = (torch.minimum(px1, tx1) - torch.maximum(px0, tx0)).clamp(min=0) * (
        torch.minimum(py1, ty1) - torch.maximum(py0, ty0)
    ).clamp(min=0)
    union = (px1 - px0) * (py1 - py0) + (tx1 - tx0).clamp(min=0) * (ty1 - ty0).clamp(min=0) - inter
    iou = inter / (union + eps)
    hull = (torch.maximum(px1, tx1) - torch.minimum(px0, tx0)) * (
        torch.maximum(py1, ty1) - torch.minimum(py0, ty0)
    )
    loss = 1.0 - (iou - (hull - union) / (hull + eps))
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def paired_ious(pred_boxes: Sequence[Box | None], target_boxes: Sequence[Box | None]) -> np.ndarray:
    """IoU of each predicted box with its true box; ``None`` boxes follow the module's missing-box rule."""
    if len(pred_boxes) != len(target_boxes):
        raise MedlensError(f"{len(pred_boxes)} predicted boxes but {len(target_boxes)} true boxes")
    out = np.empty(len(pred_boxes), dtype=np.float64)
    for i, (p, t) in enumerate(zip(pred_boxes, target_boxes)):
        if p is None or t is None:
            out[i] = 1.0 if p is None and t is None else 0.0
        else:
            out[i] = box_iou(p, t)
    return out


def iou_mean(pred_boxes: Sequence[Box | None], target_boxes: Sequence[Box | None]) -> float:
    """Mean IoU over cases (detection metric ``iou_mean``)."""
    ious = paired_ious(pred_boxes, target_boxes)
    return float(ious.mean()) if ious.size else float("nan")


def iou50_rate(pred_boxes: Sequence[Box | None], target_boxes: Sequence[Box | None]) -> float:
    """Fraction of cases whose IoU is at least 0.5 (detection metric ``iou50_rate``)."""
    ious = paired_ious(pred_boxes, target_boxes)
    return float((ious >= 0.5).mean()) if ious.size else float("nan")
