"""The priority formula against hand-computed rows, the review and unreadable rules, and the config."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import pytest

from medlens.errors import MedlensError
from medlens.triaging.config import DEFAULT_WEIGHTS, TriageConfig
from medlens.triaging.history import history_for
from medlens.triaging.priority import score_study

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def finding(record, cfg):
    p = float((record.get("probabilities") or {}).get("glioma", 0.0))
    return p, f"p(glioma) {p:.2f}"


def record(study, p, **extra):
    rec = {
        "input": f"{study}.png",
        "study": study,
        "patient_id": None,
        "study_time": None,
        "referral_priority": None,
        "task": "classification",
        "prediction": "glioma" if p >= 0.5 else "notumor",
        "probabilities": {"glioma": p, "notumor": 1 - p},
        "confidence": max(p, 1 - p),
        "calibrated": True,
        "ood": {"score": 0.1, "flag": False, "reason": ""},
        "explain_png": None,
        "error": None,
        "dicom": None,
    }
    rec.update(extra)
    return rec


def test_priority_formula_matches_three_hand_computed_rows():
    cfg = TriageConfig()
    assert cfg.weights == DEFAULT_WEIGHTS  # finding 10, review 3, prior 2, referral 3, age 1, wait 1

    # A: p 0.90, sure (no review), prior positive 3 months ago (within 24 -> 1), stat referral (1),
    # age 70 (> 65), waited 3 h (180 / 1440 min = 0.125).
    a = record("a", 0.9, study_time="2025-06-01T09:00:00+00:00")
    hist_a = {"age": 70.0, "prior_positive": date(2025, 3, 1), "referral_priority": "stat"}
    # 10 × 0.9 + 3 × 0 + 2 × 1 + 3 × 1 + 1 × 1 + 1 × 0.125 = 9 + 0 + 2 + 3 + 1 + 0.125 = 15.125
    got = score_study(a, cfg, finding, {**history_for(a, None), **hist_a}, NOW)
    assert got["priority"] == pytest.approx(15.125)
    assert got["contributions"] == pytest.approx(
        {"finding": 9.0, "review": 0.0, "prior_positive": 2.0, "referral": 3.0, "age": 1.0, "wait": 0.125}
    )
    assert got["wait_minutes"] == pytest.approx(180.0)
    assert got["reason"] == "p(glioma) 0.90; prior positive 2025-03; stat referral; age 70; waited 3 h 0 min"

    # B: p 0.30, top-class probability 0.55 < 0.6 -> review 1; prior positive 2022-06-01, 1094 days before the
    # study (2025-05-30) = 1094 / 30.4375 = 35.943 months: (48 - 35.943) / 24 = 0.50240; routine referral (0);
    # age 40 (0); waited 48 h -> 48 / 24 capped at 1.
    b = record("b", 0.3, confidence=0.55, study_time="2025-05-30T12:00:00+00:00")
    hist_b = {"age": 40.0, "prior_positive": date(2022, 6, 1), "referral_priority": "routine"}
    prior = (48 - 1094 / (365.25 / 12)) / 24
    # 10 × 0.3 + 3 × 1 + 2 × 0.50240 + 3 × 0 + 1 × 0 + 1 × 1 = 3 + 3 + 1.00479 + 0 + 0 + 1 = 8.00479
    got = score_study(b, cfg, finding, {**history_for(b, None), **hist_b}, NOW)
    assert got["factors"]["prior_positive"] == pytest.approx(prior)
    assert got["priority"] == pytest.approx(3 + 3 + 2 * prior + 1)
    assert got["priority"] == pytest.approx(8.00479, abs=1e-5)
    assert got["reason"] == (
        "p(glioma) 0.30; low confidence 0.55: review; prior positive 2022-06; waited 48 h 0 min"
    )

    # C: out of distribution (review 1), p 0; no history row: age 80 from PatientAge "080Y" (> 65 -> 1), study
    # time from StudyDate/StudyTime 2025-06-01 11:30 UTC (30 min: 30 / 1440), urgent referral (0.5).
    c = record(
        "c",
        0.0,
        ood={"score": 9.0, "flag": True, "reason": "far from training"},
        referral_priority="urgent",
        dicom={"PatientAge": "080Y", "PatientSex": "F", "StudyDate": "20250601", "StudyTime": "113000"},
    )
    hist_c = history_for(c, None)
    hist_c["study_time"] = hist_c["study_time"].replace(tzinfo=timezone.utc)
    # 10 × 0 + 3 × 1 + 2 × 0 + 3 × 0.5 + 1 × 1 + 1 × 30/1440 = 0 + 3 + 0 + 1.5 + 1 + 0.0208333 = 5.5208333
    got = score_study(c, cfg, finding, hist_c, NOW)
    assert got["priority"] == pytest.approx(5.5208333, abs=1e-6)
    assert got["reason"] == (
        "p(glioma) 0.00; out of distribution: review; urgent referral; age 80; waited 30 min"
    )


def test_review_is_raised_never_lowered_and_a_free_history_column_counts():
    cfg = TriageConfig(weights={"smoker": 2.0})  # merged into the defaults
    assert cfg.weights["finding"] == 10 and cfg.factors[-1] == "smoker"
    sure = record("s", 0.95, ood={"score": 5.0, "flag": True, "reason": "odd"})
    got = score_study(sure, cfg, finding, {"smoker": "yes"}, NOW)
    # 10 × 0.95 + 3 × 1 (ood, although confident) + 2 × 1 (smoker) = 14.5; no study time: no wait
    assert got["priority"] == pytest.approx(14.5)
    assert got["wait_minutes"] is None and got["reason"].endswith("arrival time unknown")
    with pytest.raises(MedlensError, match="smoker"):
        score_study(sure, cfg, finding, {"smoker": "maybe"}, NOW)


def test_unreadable_study_is_read_first_with_its_reason():
    bad = record("x", 0.0, error="truncated file (image file is truncated)", probabilities=None)
    got = score_study(bad, TriageConfig(), lambda r, c: 1 / 0, None, NOW)  # the finding is never asked
    assert math.isinf(got["priority"]) and got["unreadable"]
    assert got["reason"] == "read first, unreadable: truncated file (image file is truncated)"


def test_config_loads_yaml_and_refuses_unknown_keys_and_bad_values(tmp_path):
    assert TriageConfig.load(None) == TriageConfig()
    good = tmp_path / "triage.yaml"
    good.write_text("weights:\n  finding: 5\nreferral_levels:\n  ASAP: 0.8\nurgent_classes:\n  glioma: 1.0\n")
    cfg = TriageConfig.load(good)
    assert cfg.weights["finding"] == 5.0 and cfg.weights["wait"] == 1.0
    assert cfg.referral_levels == {"stat": 1.0, "urgent": 0.5, "routine": 0.0, "asap": 0.8}
    for text, pattern in (
        ("wieghts: {finding: 1}\n", r"unknown key 'wieghts'.*Did you mean 'weights'"),
        ("low_confidence: 1.5\n", "low_confidence must be a number between 0 and 1"),
        ("weights: {finding: -1}\n", "weights.finding"),
        ("wait_full_hours: 0\n", "wait_full_hours"),
        ("referral_levels: {stat: high}\n", "referral_levels.stat"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(MedlensError, match=pattern) as err:
            TriageConfig.load(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_prior_positive_after_the_study_is_not_a_prior_and_the_reason_says_so():
    # 2099 is after both the study (2025-05-31) and the worklist's time (2025-06-01): not a prior finding.
    hist = {
        "prior_positive": date(2099, 1, 1),
        "study_time": datetime(2025, 5, 31, 9, 0, tzinfo=timezone.utc),
    }
    got = score_study(record("s", 0.3), TriageConfig(), finding, hist, NOW)
    assert got["factors"]["prior_positive"] == 0.0 and got["contributions"]["prior_positive"] == 0.0
    assert "prior positive 2099-01-01 is after the study: not counted" in got["reason"]
    # without a study time the worklist's time is the reference
    got = score_study(record("s", 0.3), TriageConfig(), finding, {"prior_positive": date(2025, 7, 1)}, NOW)
    assert got["factors"]["prior_positive"] == 0.0 and "after the study: not counted" in got["reason"]
    # the day of the study itself still counts
    same_day = {"prior_positive": date(2025, 6, 1)}
    assert (
        score_study(record("s", 0.3), TriageConfig(), finding, same_day, NOW)["factors"]["prior_positive"]
        == 1
    )
