"""Hand-computed checks of the localisation metrics the loop and the evaluator report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medlens.evaluation.seg_evaluate import pick_examples
from medlens.evaluation.seg_metrics import patient_bootstrap_ci
from medlens.tasks.segmentation import SegmentationTask


def test_validation_dice_pools_each_patients_slices():
    # patient 0: slices (inter, pred, true) = (2, 3, 3) and (0, 0, 0) → 2*2/6; patient 1: (1, 2, 4) → 2/6
    outputs = {
        "inter": torch.tensor([2, 0, 1]),
        "pred": torch.tensor([3, 0, 2]),
        "true": torch.tensor([3, 0, 4]),
        "group": torch.tensor([0, 0, 1]),
        "loss": torch.tensor([1.5]),
        "n": torch.tensor([3]),
    }
    metrics = SegmentationTask(["background", "foreground"]).validation_metrics(outputs)
    assert metrics["val_dice"] == pytest.approx((4 / 6 + 2 / 6) / 2)
    assert metrics["val_dice_case"] == pytest.approx((4 / 6 + 1.0 + 2 / 6) / 3)  # the empty slice scores 1
    assert metrics["val_loss"] == pytest.approx(0.5)


def test_patient_bootstrap_resamples_patients_not_cases():
    values = [1.0, 1.0, 1.0, 0.0]  # patient a: three perfect slices; patient b: one failure
    lo, hi = patient_bootstrap_ci(values, ["a", "a", "a", "b"], n_bootstrap=2000, seed=0)
    # A resample holds 2 patients: aa → 1, ab → 3/4, bb → 0; the interval spans all three outcomes.
    assert lo == pytest.approx(0.0) and hi == pytest.approx(1.0)
    assert patient_bootstrap_ci([0.5, 0.5, math.nan], ["a", "b", "b"], n_bootstrap=200) == [0.5, 0.5]
    assert patient_bootstrap_ci([0.3, 0.4], ["a", "a"]) is None  # one patient: no interval
    assert patient_bootstrap_ci([0.3, 0.4], ["a", "b"], n_bootstrap=0) is None


def test_examples_are_best_median_worst_of_cases_with_an_object():
    cases = [{"dice": d, "foreground_true": f} for d, f in [(0.9, 5), (1.0, 0), (0.2, 3), (0.5, 7), (0.7, 1)]]
    assert pick_examples(cases, "dice") == [("best", 0), ("median", 3), ("worst", 2)]
    assert pick_examples([{"iou": 0.4}], "iou") == [("best", 0)]
    assert pick_examples([], "dice") == []


def test_segmentation_loss_is_low_for_a_confident_correct_prediction():
    task = SegmentationTask(["background", "foreground"])
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5] = 1
    good = torch.stack([(1 - target) * 10.0, target * 10.0], dim=1).float()
    assert task.loss(good, target) < 0.01 < task.loss(-good, target)
    assert np.isfinite(float(task.loss(torch.zeros(2, 2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))))
