"""Operating points against scikit-learn, Wilson and DeLong against textbook values, the clinical figure."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from medlens.errors import MedlensError
from medlens.evaluation.clinical_plots import plot_operating_curves
from medlens.evaluation.operating_points import (
    curves,
    delong_auc,
    delong_per_class,
    operating_points,
    positive_classes,
    wilson,
)

NAMES = ["normal", "benign", "malignant", "other"]


def _softmax_data(n: int = 400, n_classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += 1.5
    # round so that scores tie, exercising the >= and midrank handling
    probs = np.exp(np.round(logits, 1))
    return y, probs / probs.sum(axis=1, keepdims=True)


def _binary(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and 2-column probabilities whose second column is ``scores``."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.asarray(positive).astype(int), np.column_stack([1 - scores, scores])


def _brute_force_delong(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """DeLong (1988) structural components by the O(m n) kernel psi(x, y) = 1, 1/2, 0."""
    x, y = scores[positive], scores[~positive]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = psi.mean()
    s10 = ((v10 - auc) ** 2).sum() / (len(x) - 1)
    s01 = ((v01 - auc) ** 2).sum() / (len(y) - 1)
    return float(auc), float(s10 / len(x) + s01 / len(y))


# ---------------------------------------------------------------------------------------------- Wilson


def test_wilson_textbook_values():
    lo, hi = wilson(81, 263)  # Newcombe (1998), example of 81/263
    assert float(lo) == pytest.approx(0.2553, abs=5e-5)
    assert float(hi) == pytest.approx(0.3662, abs=5e-5)
    lo, hi = wilson(0, 10)
    assert float(lo) == 0.0
    assert float(hi) == pytest.approx(0.2775, abs=5e-5)
    lo, hi = wilson(np.array([10, 0, 5]), np.array([10, 0, 10]))
    assert lo[0] == pytest.approx(0.7225, abs=5e-5) and hi[0] == 1.0
    assert np.isnan(lo[1]) and np.isnan(hi[1])
    assert lo[2] == pytest.approx(1 - hi[2])  # symmetric around 1/2


def test_wilson_matches_statsmodels_when_installed():
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    k, n = np.array([0, 3, 17, 81, 50]), np.array([10, 7, 40, 263, 50])
    lo, hi = wilson(k, n)
    ref_lo, ref_hi = proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
    np.testing.assert_allclose(lo, ref_lo, atol=1e-10)
    np.testing.assert_allclose(hi, ref_hi, atol=1e-10)


# --------------------------------------------------------------------------------------- positive classes


def test_positive_classes_binary_multiclass_and_named():
    assert positive_classes(["neg", "pos"], None) == [1]
    assert positive_classes(["neg", "pos"], "neg") == [0]
    assert positive_classes(NAMES, None) == [0, 1, 2, 3]
    assert positive_classes(NAMES, "malignant") == [2]


def test_unknown_positive_class_raises_with_the_classes():
    y, probs = _softmax_data(50)
    with pytest.raises(MedlensError, match="'x' is not one of the classes"):
        operating_points(y, probs, NAMES, positive="x")
    with pytest.raises(MedlensError, match="Did you mean 'malignant'"):
        positive_classes(NAMES, "malignent")


# --------------------------------------------------------------------------------------- threshold table


def test_counts_match_sklearn_confusion_matrix():
    y, probs = _softmax_data()
    grid = [0.05, 0.2, 0.25, 0.5, 0.8]
    rows = operating_points(y, probs, NAMES, grid=grid)
    assert {r["class"] for r in rows} == set(NAMES)  # multiclass: every class is scored
    checked = 0
    for row in rows:
        c = NAMES.index(row["class"])
        truth, flagged = y == c, probs[:, c] >= row["threshold"]
        tn, fp, fn, tp = confusion_matrix(truth, flagged, labels=[False, True]).ravel()
        assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (tp, fp, tn, fn)
        assert row["sensitivity"]["value"] == pytest.approx(tp / (tp + fn))
        assert row["specificity"]["value"] == pytest.approx(tn / (tn + fp))
        assert row["flag_rate"]["value"] == pytest.approx((tp + fp) / len(y))
        lo, hi = row["sensitivity"]["ci95"]
        assert lo <= row["sensitivity"]["value"] <= hi
        checked += 1
    assert checked == 4 * (len(grid) + 5)


def test_default_grid_and_target_labels():
    y, probs = _softmax_data()
    rows = operating_points(y, probs, NAMES, positive="benign")
    grid_rows = [r for r in rows if r["target"] is None]
    assert [r["threshold"] for r in grid_rows] == pytest.approx(np.arange(1, 20) * 0.05)
    assert [r["target"] for r in rows if r["target"]] == [
        "sensitivity>=0.90",
        "sensitivity>=0.95",
        "sensitivity>=0.99",
        "specificity>=0.90",
        "specificity>=0.95",
    ]


@pytest.mark.parametrize("target", [0.90, 0.95, 0.99])
def test_sensitivity_target_is_the_most_specific_threshold(target):
    y, probs = _softmax_data()
    for row in operating_points(y, probs, NAMES):
        if row["target"] != f"sensitivity>={target:.2f}":
            continue
        c = NAMES.index(row["class"])
        fpr, tpr, thresholds = roc_curve(y == c, probs[:, c], drop_intermediate=False)
        i = int(np.flatnonzero(thresholds == row["threshold"])[0])  # thresholds descend
        assert tpr[i] >= target
        assert tpr[i - 1] < target  # the next larger distinct score misses the target
        assert row["sensitivity"]["value"] == pytest.approx(tpr[i])
        assert row["specificity"]["value"] == pytest.approx(1 - fpr[i])


@pytest.mark.parametrize("target", [0.90, 0.95])
def test_specificity_target_is_the_most_sensitive_threshold(target):
    y, probs = _softmax_data()
    for row in operating_points(y, probs, NAMES):
        if row["target"] != f"specificity>={target:.2f}":
            continue
        c = NAMES.index(row["class"])
        fpr, _, thresholds = roc_curve(y == c, probs[:, c], drop_intermediate=False)
        i = int(np.flatnonzero(thresholds == row["threshold"])[0])
        assert 1 - fpr[i] >= target
        assert 1 - fpr[i + 1] < target  # the next smaller distinct score misses the target


def test_hand_made_case_net_benefit_f1_and_likelihood_ratios():
    # positives score 0.9, 0.7, 0.3; negatives 0.6, 0.2, 0.1, 0.1; threshold 0.5 -> TP 2, FP 1, TN 3, FN 1
    y, probs = _binary([0.9, 0.7, 0.3, 0.6, 0.2, 0.1, 0.1], [1, 1, 1, 0, 0, 0, 0])
    (row,) = [r for r in operating_points(y, probs, ["no", "yes"], grid=[0.5]) if r["target"] is None]
    assert row["class"] == "yes"
    assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (2, 1, 3, 1)
    assert row["net_benefit"] == pytest.approx(2 / 7 - 1 / 7 * 0.5 / 0.5)
    assert row["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert row["lr_plus"] == pytest.approx((2 / 3) / (1 / 4))
    assert row["lr_minus"] == pytest.approx((1 / 3) / (3 / 4))
    assert row["ppv"]["value"] == pytest.approx(2 / 3)
    assert row["npv"]["value"] == pytest.approx(3 / 4)
    # sensitivity 0.9 needs all 3 positives -> the largest such score is 0.3 (FP 1: 0.6)
    sens90 = next(r for r in operating_points(y, probs, ["no", "yes"]) if r["target"] == "sensitivity>=0.90")
    assert sens90["threshold"] == 0.3 and sens90["tp"] == 3 and sens90["fp"] == 1


def test_zero_denominators_give_none():
    y, probs = _binary([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
    rows = {r["threshold"]: r for r in operating_points(y, probs, ["no", "yes"], grid=[0.05, 0.5, 0.95])}
    perfect = rows[0.5]  # specificity 1 -> LR+ divides by 0
    assert perfect["specificity"]["value"] == 1.0
    assert perfect["lr_plus"] is None
    assert perfect["lr_minus"] == pytest.approx(0.0)
    everyone = rows[0.05]  # everyone flagged: specificity 0 -> LR- divides by 0; NPV has no cases
    assert everyone["lr_minus"] is None
    assert everyone["npv"] == {"value": None, "ci95": None}
    nobody = rows[0.95]  # nobody flagged: PPV has no cases
    assert nobody["ppv"] == {"value": None, "ci95": None}
    assert nobody["f1"] == pytest.approx(0.0)


def test_class_without_positives_has_no_target_rows():
    y = np.array([0, 0, 1, 1, 0])
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.4, 0.4, 0.2]])
    rows = operating_points(y, probs, ["a", "b", "c"])
    c_rows = [r for r in rows if r["class"] == "c"]
    assert len(c_rows) == 19 and all(r["target"] is None for r in c_rows)
    assert all(r["sensitivity"]["value"] is None for r in c_rows)
    assert len([r for r in rows if r["class"] == "a"]) == 19 + 5


def test_table_is_fast():
    y, probs = _softmax_data(1311)
    operating_points(y, probs, NAMES)
    start = time.perf_counter()
    operating_points(y, probs, NAMES)
    assert time.perf_counter() - start < 0.05


# ------------------------------------------------------------------------------------------------ DeLong


def test_delong_matches_sklearn_auc_and_brute_force_variance():
    y, probs = _softmax_data(300)
    for c in range(4):
        result = delong_auc(probs[:, c], y == c)
        auc, var = _brute_force_delong(probs[:, c], y == c)
        assert result["value"] == pytest.approx(roc_auc_score(y == c, probs[:, c]), abs=1e-12)
        assert result["value"] == pytest.approx(auc, abs=1e-12)
        assert result["se"] == pytest.approx(np.sqrt(var), rel=1e-9)
        lo, hi = result["ci95"]
        assert lo == pytest.approx(auc - 1.959963984540054 * np.sqrt(var))
        assert hi == pytest.approx(min(1.0, auc + 1.959963984540054 * np.sqrt(var)))
        assert result["method"] == "DeLong"


def test_delong_hanley_mcneil_ct_ratings():
    # Hanley & McNeil (1982), table 1: CT ratings 1..5 of 58 normal and 51 abnormal cases
    ratings = np.arange(1, 6)
    normal = np.repeat(ratings, [33, 6, 6, 11, 2])
    abnormal = np.repeat(ratings, [3, 2, 2, 11, 33])
    scores = np.concatenate([normal, abnormal]).astype(float)
    result = delong_auc(scores, np.r_[np.zeros(58, bool), np.ones(51, bool)])
    assert result["value"] == pytest.approx(0.893, abs=0.001)
    assert result["se"] == pytest.approx(0.032, abs=0.004)


def test_delong_degenerate_cases():
    result = delong_auc([0.1, 0.4, 0.7], [False, False, False])
    assert result["value"] is None and result["se"] is None and result["ci95"] is None
    assert "note" in result
    one = delong_auc([0.1, 0.4, 0.7], [False, False, True])
    assert one["value"] == 1.0 and one["se"] is None and "note" in one
    perfect = delong_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert perfect["ci95"] == [1.0, 1.0]  # zero variance, clipped to [0, 1]


def test_delong_per_class_keys():
    y, probs = _softmax_data(100)
    assert list(delong_per_class(y, probs, NAMES)) == NAMES
    assert list(delong_per_class(y, probs, NAMES, positive="other")) == ["other"]


# ------------------------------------------------------------------------------------------ curves, plot


def test_curves_shape_and_values():
    y, probs = _softmax_data(1000)
    out = curves(y, probs, NAMES)
    assert list(out) == NAMES
    entry = out["benign"]
    assert len(entry["pr"]["precision"]) <= 200 and len(entry["roc"]["fpr"]) <= 200
    assert entry["roc"]["fpr"][0] == 0.0 and entry["roc"]["tpr"][-1] == 1.0
    assert len(entry["decision"]["threshold"]) == 99
    prevalence = np.mean(y == 1)
    t = entry["decision"]["threshold"][9]
    assert t == 0.1
    assert entry["decision"]["treat_all"][9] == pytest.approx(prevalence - (1 - prevalence) * 0.1 / 0.9)
    flagged = probs[:, 1] >= t
    tp, fp = np.sum(flagged & (y == 1)), np.sum(flagged & (y != 1))
    assert entry["decision"]["net_benefit"][9] == pytest.approx(tp / 1000 - fp / 1000 * 0.1 / 0.9)
    assert entry["flag"]["flag_rate"][0] == 1.0 and entry["flag"]["sensitivity"][0] == 1.0
    assert np.all(np.diff(entry["flag"]["flag_rate"]) <= 0)


def test_plot_operating_curves_writes_png(tmp_path):
    y, probs = _softmax_data(200)
    path = plot_operating_curves(curves(y, probs, NAMES), tmp_path / "operating.png")
    assert path == tmp_path / "operating.png"
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_wilson_matches_the_closed_form():
    lo, hi = wilson(np.array([0, 8, 10]), np.array([10, 10, 10]))
    # k = 8, n = 10, z = 1.96: centre = (0.8 + 0.19208) / 1.38415 = 0.71675, half = 0.24891
    assert lo[1] == pytest.approx(0.4902, abs=1e-4)
    assert hi[1] == pytest.approx(0.9433, abs=1e-4)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(0.2775, abs=1e-4)
    assert hi[2] == 1.0 and lo[2] == pytest.approx(0.7225, abs=1e-4)
    assert np.isnan(wilson(0, 0)[0])
