"""Boxes from masks, IoU, GIoU loss and detection metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medlens.errors import MedlensError
from medlens.tasks.boxes import box_iou, giou_loss, iou50_rate, iou_mean, mask_to_box, paired_ious


def test_mask_to_box_takes_the_largest_component():
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:7] = 255  # rows 2..4, columns 3..6: 12 pixels
    mask[8, 10] = 1  # a 1-pixel speck elsewhere
    assert mask_to_box(mask) == (3, 2, 7, 5)
    assert mask_to_box(np.zeros((4, 4))) is None


def test_mask_to_box_joins_diagonal_neighbours():
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # one 8-connected component of 3 pixels
    mask[0, 5] = mask[1, 5] = True  # a 2-pixel component
    assert mask_to_box(mask) == (1, 1, 4, 4)
    with pytest.raises(MedlensError, match=r"needs a 2D mask, got shape \(2, 2, 2\)"):
        mask_to_box(np.ones((2, 2, 2)))


def test_box_iou_hand_computed():
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)  # 1 shared of 4 + 4 - 1
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou((2, 0, 0, 2), (0, 0, 2, 2)) == 0.0  # an inverted box is empty
    ious = box_iou([[0, 0, 2, 2], [0, 0, 4, 1]], [[1, 1, 3, 3], [0, 0, 2, 1]])
    np.testing.assert_allclose(ious, [1 / 7, 0.5])
    with pytest.raises(MedlensError, match="must hold boxes of 4 numbers"):
        box_iou((0, 0, 1), (0, 0, 1, 1))


def test_giou_loss_hand_computed():
    pred = torch.tensor([[0.0, 0, 2, 2], [0, 0, 1, 1], [0, 0, 2, 2]], requires_grad=True)
    target = torch.tensor([[0.0, 0, 2, 2], [2, 0, 3, 1], [1, 1, 3, 3]])
    loss = giou_loss(pred, target, reduction="none")
    # identical: 0; disjoint: IoU 0, hull 3, union 2 -> 1 + 1/3; overlapping: 1 - (1/7 - (9 - 7) / 9).
    torch.testing.assert_close(loss, torch.tensor([0.0, 4 / 3, 1 - 1 / 7 + 2 / 9]), atol=1e-5, rtol=1e-5)
    giou_loss(pred, target).backward()
    assert pred.grad[1].abs().sum() > 0  # disjoint boxes still get a gradient, unlike plain IoU
    swapped = torch.tensor([[2.0, 2, 0, 0]])
    torch.testing.assert_close(
        giou_loss(swapped, torch.tensor([[1.0, 1, 3, 3]])),
        giou_loss(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[1.0, 1, 3, 3]])),
    )
    assert giou_loss(pred, target, reduction="sum").item() == pytest.approx(float(loss.sum()), rel=1e-5)
    with pytest.raises(MedlensError, match="reduction must be"):
        giou_loss(pred, target, reduction="max")
    with pytest.raises(MedlensError, match=r"two \(N, 4\) box tensors"):
        giou_loss(pred, target[:2])


def test_detection_metrics_with_missing_boxes():
    preds = [(0, 0, 2, 2), (0, 0, 2, 2), None, None]
    truths = [(0, 0, 2, 2), (1, 1, 3, 3), (0, 0, 1, 1), None]
    np.testing.assert_allclose(paired_ious(preds, truths), [1.0, 1 / 7, 0.0, 1.0])
    assert iou_mean(preds, truths) == pytest.approx((2 + 1 / 7) / 4)
    assert iou50_rate(preds, truths) == 0.5
    with pytest.raises(MedlensError, match="4 predicted boxes but 3 true boxes"):
        iou_mean(preds, truths[:3])
