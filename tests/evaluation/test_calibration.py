"""Calibration measures against hand-worked cases, and temperature scaling on over-confident toy models."""

from __future__ import annotations

import numpy as np
import pytest

from medlens.evaluation.calibration import brier, calibration_summary, fit_temperature, nll
from medlens.tasks.classification import softmax

# conf = 0.8, 0.6, 0.9, 0.7 ; correct = 1, 1, 0, 1 (each case alone in one of 10 equal-width bins)
PROBS = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9], [0.7, 0.3]])
Y = np.array([1, 0, 0, 0])


def test_ece_brier_nll_by_hand():
    s = calibration_summary(Y, PROBS, n_bins=10)
    assert s["ece"] == pytest.approx((0.2 + 0.4 + 0.9 + 0.3) / 4)
    assert s["brier"] == pytest.approx((0.04 + 0.16 + 0.81 + 0.09) / 4)
    assert s["nll"] == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.1, 0.7])))
    # two equal-mass bins: {0.6, 0.7} both right (gap |2 - 1.3|), {0.8, 0.9} one right (gap |1 - 1.7|)
    two = calibration_summary(Y, PROBS, n_bins=2)
    assert two["ece_equal_mass"] == pytest.approx((0.7 + 0.7) / 4)
    assert [b["count"] for b in two["bins_equal_mass"]] == [2, 2]
    # classwise: class 1's probability 0.8, 0.4, 0.9, 0.3 against outcomes 1, 0, 0, 0, and class 0 mirrored
    k1 = (abs(1 - 0.8) + abs(0 - 0.4) + abs(0 - 0.9) + abs(0 - 0.3)) / 4
    k0 = (abs(0 - 0.2) + abs(1 - 0.6) + abs(1 - 0.1) + abs(1 - 0.7)) / 4
    assert s["classwise_ece"] == pytest.approx((k0 + k1) / 2)


def test_multiclass_brier_sums_over_classes():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    value, definition = brier(np.array([0, 2]), probs)
    assert value == pytest.approx(((0.09 + 0.04 + 0.01) + (0.01 + 0.01 + 0.04)) / 2)
    assert "sum_k" in definition


def test_perfectly_calibrated_scores_have_small_ece():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 20000)
    y = (rng.uniform(size=p.size) < p).astype(int)  # the top class (1) is right with probability p
    s = calibration_summary(y, np.stack([1 - p, p], axis=1))
    assert s["ece"] < 0.02 and s["ece_equal_mass"] < 0.02


def test_temperature_scaling_recovers_the_temperature_and_lowers_nll():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (20000, 4))
    true_t = 2.5  # labels drawn from softmax(logits / 2.5): raw softmax(logits) is over-confident
    p = softmax(logits, true_t)
    y = (p.cumsum(axis=1) > rng.uniform(size=(len(p), 1))).argmax(axis=1)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(true_t, rel=0.05)
    before, after = softmax(logits), softmax(logits, t)
    assert nll(y, after) < nll(y, before) - 0.1
    assert calibration_summary(y, after)["ece"] < calibration_summary(y, before)["ece"] / 3
    assert (after.argmax(1) == before.argmax(1)).all()  # predictions never change


def test_fit_temperature_refuses_bad_shapes():
    from medlens.errors import MedlensError

    with pytest.raises(MedlensError, match="logits"):
        fit_temperature(np.zeros(3), np.zeros(3, dtype=int))
