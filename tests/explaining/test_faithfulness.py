"""Faithfulness of attribution maps: pointing game, energy in the mask, baselines, deletion, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medlens.errors import MedlensError
from medlens.evaluation.seg_metrics import patient_bootstrap_ci
from medlens.explaining.faithfulness import (
    deletion_auc,
    deletion_curve,
    energy_in_mask,
    localisation_report,
    point_baselines,
    pointing_hits,
)

H = W = 16


def _lesion_slices() -> tuple[np.ndarray, np.ndarray]:
    """Three slices with the lesion at rows 6..8, cols 6..8; peaks inside, 3 px right, 5 px right."""
    masks = np.zeros((3, H, W), dtype=bool)
    masks[:, 6:9, 6:9] = True
    heat = np.zeros((3, H, W))
    heat[0, 7, 7] = 1.0  # inside
    heat[1, 7, 11] = 1.0  # 3 px right of the last lesion column (8)
    heat[2, 7, 13] = 1.0  # 5 px right
    return heat, masks


def test_pointing_hits_inside_within_dilation_and_outside():
    heat, masks = _lesion_slices()
    assert pointing_hits(heat, masks, dilate=3).tolist() == [True, True, False]
    assert pointing_hits(heat, masks, dilate=0).tolist() == [True, False, False]
    assert pointing_hits(heat, masks, dilate=5).tolist() == [True, True, True]


def test_pointing_dilation_is_a_disc_and_ties_take_the_first_peak():
    masks = np.zeros((2, H, W), dtype=bool)
    masks[:, 4, 4] = True
    heat = np.zeros((2, H, W))
    heat[0, 6, 7] = 1.0  # distance sqrt(4 + 9) = 3.6 > 3: outside the disc, inside a 7x7 square
    heat[1, 4, 4] = heat[1, 12, 12] = 1.0  # tie: the first in raster order (on the lesion) wins
    assert pointing_hits(heat, masks, dilate=3).tolist() == [False, True]
    heat[1, 4, 4] = 0.0
    heat[1, 0, 0] = 1.0  # the new first tied peak is 5.7 px away
    assert pointing_hits(heat, masks, dilate=3).tolist() == [False, False]


def test_energy_in_mask_by_hand():
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[:, :2, :2] = True
    heat = np.zeros((3, 4, 4))
    heat[0, 0, 0], heat[0, 1, 1], heat[0, 3, 3] = 1.0, 3.0, 6.0  # 4 of 10 inside
    heat[1, 0, 0], heat[1, 3, 3], heat[1, 2, 2] = 2.0, 2.0, -5.0  # negative heat is ignored: 2 of 4
    energy = energy_in_mask(heat, masks)  # slice 2 has no heat at all
    np.testing.assert_allclose(energy[:2], [0.4, 0.5])
    assert np.isnan(energy[2])


def test_centre_baseline_hits_only_when_the_lesion_covers_the_centre():
    masks = np.zeros((2, H, W), dtype=bool)
    masks[0, 6:10, 6:10] = True  # covers (8, 8)
    masks[1, 0:3, 0:3] = True  # far corner
    foreground = np.ones_like(masks)
    base = point_baselines(masks, foreground, dilate=3, seed=0)
    assert base["centre"].tolist() == [True, False]


def test_random_baseline_is_seeded_and_inside_the_foreground():
    rng = np.random.default_rng(1)
    masks = np.zeros((20, H, W), dtype=bool)
    masks[:, 2:5, 2:5] = True
    foreground = rng.random((20, H, W)) < 0.1
    foreground[-1] = False  # empty foreground: the whole image
    a = point_baselines(masks, foreground, seed=3)
    b = point_baselines(masks, foreground, seed=3)
    c = point_baselines(masks, foreground, seed=4)
    np.testing.assert_array_equal(a["random_points"], b["random_points"])
    np.testing.assert_array_equal(a["random"], b["random"])
    assert not np.array_equal(a["random_points"], c["random_points"])
    rows, cols = a["random_points"][:-1].T
    assert foreground[np.arange(19), rows, cols].all()
    # The hit is the dilated lesion at that point.
    r, c0 = a["random_points"].T
    near = (
        np.maximum(np.maximum(2 - r, r - 4), 0) ** 2 + np.maximum(np.maximum(2 - c0, c0 - 4), 0) ** 2
    ) <= 9
    np.testing.assert_array_equal(a["random"], near)


def test_random_point_is_uniform_over_the_foreground():
    foreground = np.zeros((4000, 4, 4), dtype=bool)
    foreground[:, 1, 1] = foreground[:, 2, 3] = True
    masks = np.ones_like(foreground)
    points = point_baselines(masks, foreground, seed=0)["random_points"]
    share = (points[:, 0] == 1).mean()
    assert 0.45 < share < 0.55
    assert set(map(tuple, points.tolist())) == {(1, 1), (2, 3)}


def _region_predict(calls: list[int] | None = None):
    def predict(batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.ndim == 4
        if calls is not None:
            calls.append(len(batch))
        return batch[:, 0, 2:6, 2:6].mean(axis=(1, 2))

    return predict


def test_deletion_by_the_right_map_beats_random_order():
    images = np.ones((3, 2, H, W), dtype=np.float32)
    heat = np.random.default_rng(0).random((3, H, W)) * 0.1
    heat[:, 2:6, 2:6] += 1.0  # the region the model reads
    calls: list[int] = []
    curves = deletion_curve(images, heat, _region_predict(calls), steps=10, batch_size=8)
    assert curves.shape == (3, 11)
    assert sum(calls) == 33 and max(calls) <= 8 and len(calls) == 5  # ceil(33 / 8) batches
    np.testing.assert_allclose(curves[:, 0], 1.0)  # nothing deleted yet
    np.testing.assert_allclose(curves[:, 1:], 0.0)  # 25 px >= the 16 px region
    auc = deletion_auc(curves)
    np.testing.assert_allclose(auc, 0.05)
    random_auc = deletion_auc(deletion_curve(images, heat, _region_predict(), order="random", seed=0))
    assert (auc < random_auc).all() and (random_auc > 0.3).all()
    # The map that points away from the region does worse than random.
    away = deletion_auc(deletion_curve(images, -heat, _region_predict()))
    assert (away > random_auc).all()


def test_deletion_fill_and_seeded_random_order():
    images = np.ones((2, 1, H, W), dtype=np.float32)
    heat = np.zeros((2, H, W))
    curves = deletion_curve(images, heat, _region_predict(), steps=4, fill=0.5)
    np.testing.assert_allclose(curves[:, -1], 0.5)  # everything replaced by the fill
    a = deletion_curve(images, heat, _region_predict(), order="random", seed=7)
    b = deletion_curve(images, heat, _region_predict(), order="random", seed=7)
    np.testing.assert_array_equal(a, b)
    per_channel = deletion_curve(
        np.ones((1, 2, H, W), np.float32), heat[:1], _region_predict(), fill=[0.25, 9]
    )
    assert per_channel[0, -1] == pytest.approx(0.25)


def test_auc_of_a_constant_predict_is_the_constant():
    images = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
    heat = np.random.default_rng(1).random((4, 8, 8))
    curves = deletion_curve(images, heat, lambda b: np.full(len(b), 0.7), steps=7)
    np.testing.assert_allclose(deletion_auc(curves), 0.7)
    np.testing.assert_allclose(deletion_auc(np.array([[0.0, 1.0], [1.0, 1.0]])), [0.5, 1.0])


def test_deletion_rejects_a_predict_with_the_wrong_number_of_values():
    with pytest.raises(MedlensError, match="predict returned 1 values"):
        deletion_curve(np.ones((2, 1, 4, 4), np.float32), np.zeros((2, 4, 4)), lambda b: np.ones(1))
    with pytest.raises(MedlensError, match="order"):
        deletion_curve(np.ones((2, 1, 4, 4), np.float32), np.zeros((2, 4, 4)), np.ones, order="blur")


def _report_inputs():
    rng = np.random.default_rng(0)
    n = 8
    masks = np.zeros((n, H, W), dtype=bool)
    masks[:, 6:9, 6:9] = True
    heat = rng.random((n, H, W)) * 0.1
    peaks = [(7, 7), (7, 7), (0, 0), (7, 11), (15, 15), (7, 7), (0, 15), (7, 7)]
    for i, (r, c) in enumerate(peaks):
        heat[i, r, c] = 5.0
    foreground = np.ones_like(masks)
    foreground[:, :, :2] = False
    pids = ["a", "a", "b", "b", "c", "d", "d", "d"]
    return heat, masks, foreground, pids


def test_report_intervals_are_the_patient_bootstrap():
    heat, masks, foreground, pids = _report_inputs()
    report = localisation_report(heat, masks, foreground, pids, n_bootstrap=500, seed=2)
    json.dumps(report)  # JSON-ready
    hits = pointing_hits(heat, masks).astype(float)
    assert report["pointing_game"]["value"] == pytest.approx(hits.mean())
    assert report["pointing_game"]["ci95"] == patient_bootstrap_ci(hits, pids, n_bootstrap=500, seed=2)
    # Slices of one patient are one unit: a slice-level bootstrap gives a different interval.
    assert report["pointing_game"]["ci95"] != patient_bootstrap_ci(hits, range(8), n_bootstrap=500, seed=2)
    energy = energy_in_mask(heat, masks)
    assert report["energy_in_mask"]["ci95"] == patient_bootstrap_ci(energy, pids, n_bootstrap=500, seed=2)
    uniform = (masks & foreground).sum((1, 2)) / foreground.sum((1, 2))
    assert report["energy_in_mask_uniform"]["value"] == pytest.approx(uniform.mean())
    assert report["n_slices"] == 8 and report["n_patients"] == 4 and report["dilate_px"] == 3
    assert "deletion_auc" not in report and "deletion_auc_random" not in report
    assert [s["hit"] for s in report["per_slice"]] == hits.astype(bool).tolist()
    assert report["per_slice"][3] == {
        "index": 3,
        "patient_id": "b",
        "hit": True,
        "energy": pytest.approx(energy[3]),
        "deletion_auc": None,
    }
    assert "disc of radius 3" in report["method_notes"]


def test_report_deletion_metrics_with_images_and_predict():
    heat, masks, foreground, pids = _report_inputs()
    images = np.ones((8, 1, H, W), dtype=np.float32)
    report = localisation_report(
        heat, masks, foreground, pids, images=images, predict=_region_predict(), n_bootstrap=200
    )
    auc = deletion_auc(deletion_curve(images, heat, _region_predict()))
    assert report["deletion_auc"]["value"] == pytest.approx(auc.mean())
    assert report["deletion_auc"]["ci95"] == patient_bootstrap_ci(auc, pids, n_bootstrap=200, seed=0)
    assert report["deletion_auc_random"]["value"] is not None
    assert [s["deletion_auc"] for s in report["per_slice"]] == pytest.approx(auc.tolist())
    with pytest.raises(MedlensError, match="both images and predict"):
        localisation_report(heat, masks, foreground, pids, images=images)


def test_report_refuses_empty_masks_and_naming_how_many():
    heat, masks, foreground, pids = _report_inputs()
    masks[[1, 4]] = False
    with pytest.raises(MedlensError, match="2 of 8 slices have an empty lesion mask"):
        localisation_report(heat, masks, foreground, pids)


def test_report_with_one_patient_has_no_interval():
    heat, masks, foreground, _ = _report_inputs()
    report = localisation_report(heat, masks, foreground, ["p"] * 8)
    assert report["pointing_game"]["ci95"] is None and report["n_patients"] == 1
