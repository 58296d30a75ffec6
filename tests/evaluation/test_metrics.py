"""Classification metrics against hand-computed values; bootstrap intervals; calibration; summary layout."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medlens.errors import MedlensError
from medlens.evaluation.metrics import (
    SCHEMA,
    _check_inputs,
    _resample_metrics,
    arrays_from_summary,
    build_summary,
    calibration,
    cases_from_arrays,
    classification_metrics,
)

NAMES = ["A", "B", "C"]
# 6 cases, 3 classes; supports A=3, B=2, C=1.
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array(
    [
        [0.8, 0.1, 0.1],  # A -> A
        [0.6, 0.3, 0.1],  # A -> A
        [0.3, 0.6, 0.1],  # A -> B
        [0.2, 0.7, 0.1],  # B -> B
        [0.1, 0.3, 0.6],  # B -> C
        [0.1, 0.2, 0.7],  # C -> C
    ]
)
# Confusion matrix (rows true, columns predicted): A [2 1 0], B [0 1 1], C [0 0 1].
# accuracy = (2 + 1 + 1) / 6 = 2/3
# recall A = 2/3, B = 1/2, C = 1/1 -> balanced accuracy = (2/3 + 1/2 + 1) / 3 = 13/18
# precision A = 2/2, B = 1/2 (cases 3, 4 predicted B), C = 1/2 (cases 5, 6 predicted C)
# F1 = 2TP / (support + predicted): A = 4/5, B = 2/4, C = 2/3
# macro F1 = (4/5 + 1/2 + 2/3) / 3 = 59/90; weighted F1 = (3 * 4/5 + 2 * 1/2 + 1 * 2/3) / 6 = 61/90


def test_hand_computed_multiclass_values():
    result = classification_metrics(Y_TRUE, PROBS, NAMES, n_bootstrap=0)
    m = {name: entry["value"] for name, entry in result["metrics"].items()}
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(13 / 18)
    assert m["macro_f1"] == pytest.approx(59 / 90)
    assert m["weighted_f1"] == pytest.approx(61 / 90)
    assert set(m) == {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "auc_ovr", "ece"}
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    per_class = result["per_class"]
    assert per_class["A"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert per_class["B"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per_class["C"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert result["averages"]["macro avg"]["precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert result["metrics"]["accuracy"]["ci95"] is None  # no resamples asked for


def test_binary_auc_from_pair_counts():
    # positives score 0.35, 0.8, 0.9; negatives 0.1, 0.4, 0.8 -> 9 pairs:
    # 0.35 beats 0.1 only (1); 0.8 beats 0.1 and 0.4 and ties 0.8 (2.5); 0.9 beats all (3) -> 6.5 / 9
    y = np.array([0, 0, 1, 1, 0, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.8, 0.9])
    result = classification_metrics(y, np.stack([1 - p1, p1], axis=1), ["neg", "pos"], n_bootstrap=200)
    assert result["metrics"]["auc"]["value"] == pytest.approx(6.5 / 9)
    assert "auc_ovr" not in result["metrics"]


def _synthetic(n, n_classes=3, seed=0, signal=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += signal
    probs = np.exp(logits)
    return y, probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_vectorised_resample_equals_sklearn_on_identity_resample(n_classes):
    y, probs = _synthetic(300, n_classes, seed=n_classes)
    probs = np.round(probs, 2)  # create ties in the scores
    probs /= probs.sum(axis=1, keepdims=True)
    names = [f"c{i}" for i in range(n_classes)]
    y, probs, _ = _check_inputs(y, probs, names)  # the same renormalised scores the metrics see
    point = classification_metrics(y, probs, names, n_bootstrap=0)["metrics"]
    identity = _resample_metrics(np.ones((1, len(y))), y, probs, 10, True)
    for name, entry in point.items():
        assert identity[name][0] == pytest.approx(entry["value"], abs=1e-12), name


def test_ci_contains_value_and_narrows_with_more_cases():
    small = classification_metrics(*_synthetic(100), NAMES, n_bootstrap=500)["metrics"]
    large = classification_metrics(*_synthetic(2000), NAMES, n_bootstrap=500)["metrics"]
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "auc_ovr", "ece"):
        lo, hi = small[name]["ci95"]
        assert lo <= small[name]["value"] <= hi, name
        assert (large[name]["ci95"][1] - large[name]["ci95"][0]) < (hi - lo), name


def test_bootstrap_is_deterministic_by_seed():
    y, probs = _synthetic(200)
    a = classification_metrics(y, probs, NAMES, n_bootstrap=300, seed=7)
    b = classification_metrics(y, probs, NAMES, n_bootstrap=300, seed=7)
    c = classification_metrics(y, probs, NAMES, n_bootstrap=300, seed=8)
    assert a == b
    assert a["metrics"]["accuracy"]["ci95"] != c["metrics"]["accuracy"]["ci95"]
    assert a["bootstrap"] == {
        "n_resamples": 300,
        "seed": 7,
        "ci": 0.95,
        "method": "percentile, cases resampled with replacement",
    }


def test_auc_null_with_note_when_a_class_is_absent():
    y = np.array([0, 1, 0, 1, 0])  # class C never occurs
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    result = classification_metrics(y, probs, NAMES, n_bootstrap=100)
    auc = result["metrics"]["auc_ovr"]
    assert auc["value"] is None and auc["ci95"] is None
    assert "no cases of class C" in auc["note"]
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(0.8)
    binary = classification_metrics(np.zeros(4, int), np.full((4, 2), 0.5), ["neg", "pos"], n_bootstrap=50)
    assert binary["metrics"]["auc"]["value"] is None


def test_resamples_without_both_classes_are_skipped():
    # one positive among 8 cases: about (7/8)^8 = 34 % of resamples miss it and have no AUC
    y = np.array([0] * 7 + [1])
    p1 = np.linspace(0.1, 0.9, 8)
    result = classification_metrics(y, np.stack([1 - p1, p1], axis=1), ["neg", "pos"], n_bootstrap=400)
    auc = result["metrics"]["auc"]
    assert auc["value"] == pytest.approx(1.0)
    assert auc["ci95"] == [1.0, 1.0]
    assert "resamples skipped" in auc["note"]


def test_ece_near_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    correct = rng.uniform(size=n) < conf  # right exactly as often as the model claims
    y = np.where(correct, 1, 0)
    probs = np.stack([1 - conf, conf], axis=1)
    assert calibration(y, probs)["ece"] < 0.02
    overconfident = np.stack([np.full(n, 0.01), np.full(n, 0.99)], axis=1)
    y_70 = (rng.uniform(size=n) < 0.7).astype(int)  # 99 % sure, 70 % right
    cal = calibration(y_70, overconfident)
    assert cal["ece"] == pytest.approx(0.29, abs=0.02)
    top = cal["bins"][-1]
    assert top["count"] == n and top["confidence"] == pytest.approx(0.99)
    assert cal["bins"][0]["count"] == 0 and cal["bins"][0]["accuracy"] is None


def test_summary_layout_and_round_trip():
    result = classification_metrics(Y_TRUE, PROBS, NAMES, n_bootstrap=50)
    cases = cases_from_arrays([f"case{i}" for i in range(6)], None, Y_TRUE, PROBS, NAMES)
    assert cases[2] == {
        "case_id": "case2",
        "patient_id": "case2",
        "target": "A",
        "prediction": "B",
        "probabilities": {"A": 0.3, "B": 0.6, "C": 0.1},
    }
    summary = build_summary(
        task="classification",
        run="runs/x",
        data="toy",
        split="test",
        n_cases=6,
        metrics_result=result,
        cases=cases,
        extra={"model": "cnn", "skipped": []},
    )
    assert summary["schema"] == SCHEMA
    for key in ("task", "run", "data", "split", "n_cases", "metrics", "per_class", "model", "skipped"):
        assert key in summary
    assert list(summary)[-1] == "cases"
    y, probs, names = arrays_from_summary(summary)
    assert names == NAMES and y.tolist() == Y_TRUE.tolist() and np.allclose(probs, PROBS)
    with pytest.raises(MedlensError, match="extra key 'metrics' would overwrite"):
        build_summary(
            task="classification",
            run="r",
            data="d",
            split="test",
            n_cases=6,
            metrics_result=result,
            cases=cases,
            extra={"metrics": {}},
        )
    with pytest.raises(MedlensError, match="n_cases is 5 but 6 case records"):
        build_summary(
            task="classification",
            run="r",
            data="d",
            split="test",
            n_cases=5,
            metrics_result=result,
            cases=cases,
        )


def test_bad_inputs_are_reported_clearly():
    with pytest.raises(MedlensError, match="each row must sum to 1"):
        classification_metrics(Y_TRUE, PROBS * 2, NAMES)
    with pytest.raises(MedlensError, match="probs has 3 columns but class_names is"):
        classification_metrics(Y_TRUE, PROBS, ["A", "B"])
    with pytest.raises(MedlensError, match="outside 0..2"):
        classification_metrics(np.array([0, 1, 2, 3, 0, 1]), PROBS, NAMES)
    with pytest.raises(MedlensError, match=r"shape \(N,\)"):
        classification_metrics(Y_TRUE[:4], PROBS, NAMES)


def test_large_multiclass_matches_sklearn_auc():
    y, probs = _synthetic(1311, 4, seed=3)
    result = classification_metrics(y, probs, list("abcd"), n_bootstrap=1000)
    expected = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert result["metrics"]["auc_ovr"]["value"] == pytest.approx(expected)
    assert result["bootstrap"]["n_resamples"] == 1000


def test_patient_bootstrap_resamples_patients_not_slices():
    """Ten identical slices per patient: resampling slices pretends to 10x the evidence; resampling patients
    gives exactly the interval of one case per patient."""
    y, probs = _synthetic(60, seed=5)
    one = classification_metrics(y, probs, NAMES, n_bootstrap=400, seed=1)
    slices_y, slices_p = np.repeat(y, 10), np.repeat(probs, 10, axis=0)
    patients = np.repeat([f"P{i:02d}" for i in range(60)], 10)  # sorted like the cases
    by_case = classification_metrics(slices_y, slices_p, NAMES, n_bootstrap=400, seed=1)
    by_patient = classification_metrics(slices_y, slices_p, NAMES, n_bootstrap=400, seed=1, groups=patients)
    assert by_patient["bootstrap"]["method"] == "percentile, patients (60) resampled with replacement"
    for name in ("accuracy", "macro_f1", "auc_ovr", "ece"):
        assert by_patient["metrics"][name]["value"] == pytest.approx(one["metrics"][name]["value"])
        assert by_patient["metrics"][name]["ci95"] == pytest.approx(one["metrics"][name]["ci95"], abs=1e-9), (
            name
        )
        width = lambda m, name=name: m[name]["ci95"][1] - m[name]["ci95"][0]  # noqa: E731
        assert width(by_case["metrics"]) < 0.5 * width(by_patient["metrics"]), name
    with pytest.raises(MedlensError, match="groups has 3 entries for 600 cases"):
        classification_metrics(slices_y, slices_p, NAMES, groups=["a", "b", "c"])
