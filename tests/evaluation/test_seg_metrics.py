"""Segmentation metrics against hand-computed values, the empty-mask rule and per-patient Dice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from medlens.errors import MedlensError
from medlens.evaluation.seg_metrics import (
    dice_patient,
    dice_per_patient,
    mean_case_metrics,
    segmentation_case_metrics,
)
from medlens.utils.files import write_json


def shifted_squares(dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two 10-pixel squares (cubes), the second shifted by 3 along axis 0: overlap 7/10 of each."""
    pred, target = np.zeros((2, *([30] * dims)), bool)
    pred[(slice(10, 20),) * dims] = True
    target[(slice(13, 23),) + (slice(10, 20),) * (dims - 1)] = True
    return pred, target


def test_shifted_squares_hand_computed():
    pred, target = shifted_squares()
    m = segmentation_case_metrics(pred, target, tolerance=0)
    # overlap 7 x 10 = 70 of two areas of 100: Dice 140 / 200, IoU 70 / 130.
    assert m["dice"] == pytest.approx(0.7) and m["iou"] == pytest.approx(7 / 13)
    # The outlines' farthest points (the shifted edges) are 3 px apart, and more than 5 % of points are.
    assert m["hd95"] == pytest.approx(3.0) and m["empty"] == "none"
    # Tolerance 0: only the 7 shared points on each of the two shared edges (28 of 72 outline pixels) count.
    assert m["surface_dice"] == pytest.approx(28 / 72)
    assert segmentation_case_metrics(pred, target, tolerance=3)["surface_dice"] == pytest.approx(1.0)


def test_spacing_turns_distances_into_mm():
    pred, target = shifted_squares()
    m = segmentation_case_metrics(pred, target, spacing=(2.0, 0.5), tolerance=3)
    assert m["hd95"] == pytest.approx(6.0)  # the shift is along axis 0, 2 mm per pixel
    assert m["surface_dice"] < 1.0  # 6 mm apart now exceeds the 3 mm tolerance
    assert m["dice"] == pytest.approx(0.7)  # overlap measures do not depend on spacing


def test_3d_cubes_and_torch_input():
    pred, target = shifted_squares(dims=3)
    m = segmentation_case_metrics(torch.from_numpy(pred), torch.from_numpy(target).long())
    assert m["dice"] == pytest.approx(0.7) and m["iou"] == pytest.approx(7 / 13)
    assert m["hd95"] == pytest.approx(3.0)
    same = segmentation_case_metrics(pred, pred)
    assert same["dice"] == 1.0 and same["hd95"] == 0.0 and same["surface_dice"] == 1.0


def test_empty_mask_rule_and_null_in_json(tmp_path):
    empty, square = np.zeros((8, 8)), np.pad(np.ones((2, 2)), 3)
    both = segmentation_case_metrics(empty, empty)
    assert both == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "surface_dice": 1.0, "empty": "both"}
    missed = segmentation_case_metrics(empty, square)
    assert missed["dice"] == 0.0 and missed["iou"] == 0.0 and math.isnan(missed["hd95"])
    assert missed["empty"] == "pred" and segmentation_case_metrics(square, empty)["empty"] == "target"
    write_json(tmp_path / "case.json", missed)
    assert json.loads((tmp_path / "case.json").read_text())["hd95"] is None
    summary = mean_case_metrics([both, missed, segmentation_case_metrics(*shifted_squares())])
    assert summary["dice"] == pytest.approx((1 + 0 + 0.7) / 3)
    assert summary["hd95"] == pytest.approx((0 + 3) / 2)  # the undefined one is counted, not averaged
    assert summary["hd95_undefined"] == 1 and summary["both_empty"] == 1 and summary["n_cases"] == 3


def test_bad_shapes_are_refused():
    with pytest.raises(MedlensError, match=r"prediction shape \(4, 4\) does not match target shape \(4, 5\)"):
        segmentation_case_metrics(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(MedlensError, match=r"spacing \(1.0,\) needs one value per axis of a 2D mask"):
        segmentation_case_metrics(np.ones((4, 4)), np.ones((4, 4)), spacing=(1.0,))


def test_dice_patient_pools_slices_then_averages_patients():
    def mask(*pixels):
        m = np.zeros((3, 3), bool)
        for p in pixels:
            m[p] = True
        return m

    # Patient A: slice 1 prediction {a,b,c,d} vs truth {c,d,e,f} (2 shared); slice 2 misses 2 true pixels.
    # Pooled: 2 * 2 / (4 + 4 + 0 + 2) = 0.4 (per-slice Dice would average 0.5 and 0).
    # Patient B: all empty = 1.
    preds = [mask((0, 0), (0, 1), (1, 0), (1, 1)), mask(), mask(), mask()]
    truths = [mask((1, 0), (1, 1), (2, 0), (2, 1)), mask((0, 0), (2, 2)), mask(), mask()]
    ids = ["A", "A", "B", "B"]
    assert dice_per_patient(preds, truths, ids) == pytest.approx({"A": 0.4, "B": 1.0})
    assert dice_patient(preds, truths, ids) == pytest.approx(0.7)
    with pytest.raises(MedlensError, match="needs as many predictions"):
        dice_patient(preds, truths, ids[:3])
    with pytest.raises(
        MedlensError,
        match=r"patient A: prediction shape \(3, 3\) does not match "
        r"target \(2, 2\)",
    ):
        dice_patient([mask()], [np.zeros((2, 2))], ["A"])
