"""`medlens explain` end to end on tiny runs of every task: the records, pictures and explain.json contract,
determinism, the out-of-distribution flag, --target, unreadable inputs, and the localisation scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from PIL import Image
from seg_phantoms import make_kaggle, make_spheres

import medlens
from medlens.errors import MedlensError

TINY_UNET = {"channels": [8, 16, 32], "num_res_units": 1}


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """Tiny models on a busy machine: one thread."""


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, make_folders):
    root = tmp_path_factory.mktemp("explain-cls")
    data = make_folders(root / "data", n_per_class=20, size=32)
    run = medlens.train(
        data, root / "run", model="cnn-small", epochs=4, image_size=32, batch_size=8, seed=0, progress=False
    )
    return root, data, run


def _cases(result):
    return {c["input"]: c for c in result["cases"]}


def test_classification_explanations_hold_every_fact_and_picture(cls_run, tmp_path):
    _root, data, run = cls_run
    cyst = sorted((data / "cyst").glob("*.png"))[0]
    normal = sorted((data / "normal").glob("*.png"))[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    given = [str(cyst), str(normal), str(broken)]
    result = medlens.explain(run, given, tmp_path / "out", progress=False)

    assert [c["input"] for c in result["cases"]] == given  # every input, in order, as given
    assert result["schema"] == "medlens.explain/1" and result["task"] == "classification"
    assert result["index"]["k"] == 5 and result["index"]["training_cases"] > 0
    case = _cases(result)[str(cyst)]
    assert case["method"] == "gradcam" and case["layer"] and case["target"] == case["prediction"]
    assert set(case["probabilities"]) == {"cyst", "normal"}
    assert sum(case["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert 0 <= case["peak"][0] < 32 and 0 <= case["peak"][1] < 32
    assert 0.0 <= case["heat_in_foreground"] <= 1.0
    assert len(case["similar"]) == 5
    for s in case["similar"]:
        assert {"path", "label", "similarity"} <= set(s) and s["label"] in {"cyst", "normal"}
        assert Path(s["path"]).is_file()  # a training image the user can open
    assert set(case["ood"]) >= {"score", "flag", "reason"} and case["ood"]["flag"] is False
    assert case["rationale"].startswith(f"{case['prediction']}, ")
    assert "most similar training cases" in case["rationale"]
    png = tmp_path / "out" / case["png"]
    assert png.name == f"{cyst.stem}_explain.png" and Image.open(png).size[0] >= 2 * 64
    assert "truncated" in _cases(result)[str(broken)]["error"]
    written = json.loads((tmp_path / "out" / "explain.json").read_text())
    assert [c["input"] for c in written["cases"]] == given


def test_explanations_are_deterministic(cls_run, tmp_path):
    _root, data, run = cls_run
    images = [str(p) for p in sorted((data / "cyst").glob("*.png"))[:3]]
    first = medlens.explain(run, images, tmp_path / "a", progress=False)
    second = medlens.explain(run, images, tmp_path / "b", progress=False)
    for a, b in zip(first["cases"], second["cases"]):
        assert a == b
        assert (tmp_path / "a" / a["png"]).read_bytes() == (tmp_path / "b" / b["png"]).read_bytes()


def test_target_and_methods(cls_run, tmp_path):
    _root, data, run = cls_run
    image = str(sorted((data / "cyst").glob("*.png"))[1])
    for method in ("gradcam", "gradcampp", "occlusion"):
        result = medlens.explain(run, [image], tmp_path / method, method=method, target="normal", index=False)
        [case] = result["cases"]
        assert case["method"] == method and case["target"] == "normal"
        assert case["similar"] is None and case["ood"] is None and result["index"] is None
    with pytest.raises(MedlensError, match="not a class of this model"):
        medlens.explain(run, [image], tmp_path / "x", target="glioma")
    with pytest.raises(MedlensError, match="--method must be one of"):
        medlens.explain(run, [image], tmp_path / "x", method="lime")


def test_an_image_unlike_training_is_flagged_out_of_distribution(cls_run, tmp_path):
    """A blank frame (a failed acquisition) is far from every training image in the model's embedding; a
    training-like image is not. (The real-data check, a chest X-ray given to the brain-MRI model, is in
    docs/benchmarks.md: a toy model's embedding is too coarse to tell two kinds of noise apart.)"""
    _root, data, run = cls_run
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(blank)
    typical = sorted((data / "normal").glob("*.png"))[-1]
    result = medlens.explain(run, [blank, typical], tmp_path / "out", progress=False)
    by = _cases(result)
    assert by[str(blank)]["ood"]["flag"] is True
    assert "unlike the training data" in by[str(blank)]["ood"]["reason"]
    assert "review" in by[str(blank)]["rationale"]
    assert by[str(typical)]["ood"]["flag"] is False
    assert by[str(blank)]["ood"]["score"] > by[str(typical)]["ood"]["score"]


def test_the_ood_score_is_the_mean_cosine_distance_to_the_nearest_training_cases():
    from medlens.explaining.embedding import EmbeddingIndex, ordinal

    rng = np.random.default_rng(0)
    train = rng.normal(0, 0.05, (50, 8)) + np.eye(8)[0]  # training cases cluster around axis 0
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    ids = [str(i) for i in range(50)]
    index = EmbeddingIndex.calibrated(train, labels=["a"] * 50, paths=ids, case_ids=ids, val=train[:10], k=5)
    far, near = np.eye(8)[[3]], train[[0]]
    [f], [n] = index.ood(far), index.ood(near)
    assert f["flag"] and not n["flag"] and f["score"] > 0.8 and n["score"] < 0.05
    assert [ordinal(v) for v in (1, 2, 3, 11, 12, 22, 62, 75)] == [
        "1st",
        "2nd",
        "3rd",
        "11th",
        "12th",
        "22nd",
        "62nd",
        "75th",
    ]


def test_cli_explain_prints_rationales_and_exits_2_on_an_unreadable_input(
    cls_run, tmp_path, monkeypatch, capsys
):
    _root, data, run = cls_run
    image = sorted((data / "cyst").glob("*.png"))[2]
    code, out, err = run_cli(monkeypatch, capsys, "explain", run, image, "-o", tmp_path / "o", "--quiet")
    assert code == 0, err
    assert f"{image}: " in out and "calibrated" in out and (tmp_path / "o" / "explain.json").is_file()
    code, out, err = run_cli(
        monkeypatch, capsys, "explain", run, image, tmp_path / "missing.png", "-o", tmp_path / "o2", "--quiet"
    )
    assert code == 2 and "missing.png" in err and "Traceback" not in err
    code, out, err = run_cli(monkeypatch, capsys, "explain", tmp_path / "nope", image, "--quiet")
    assert code == 2 and "run directory" in err


@pytest.fixture(scope="module")
def seg_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain-seg")
    data = make_kaggle(root / "data", n_patients=8, n_slices=6, size=32)
    common = dict(image_size=32, batch_size=8, lr=0.01, seed=0, progress=False)
    seg = medlens.train(
        data, root / "seg", task="segmentation", model="unet", epochs=8, model_args=TINY_UNET, **common
    )
    det = medlens.train(
        data, root / "det", task="detection", model="boxnet", epochs=4, boxes_from_masks=True, **common
    )
    labels = root / "labels.csv"
    medlens.convert("masks-to-labels", data, labels)
    cls = medlens.train(labels, root / "cls", model="cnn-small", epochs=4, **common)
    return root, data, seg, det, cls


def test_segmentation_explanation_gives_mask_uncertainty_and_lesion_facts(seg_runs, tmp_path):
    _root, data, seg, _det, _cls = seg_runs
    lesion = data / "P00" / "P00_1.tif"
    result = medlens.explain(seg, [lesion], tmp_path / "s", progress=False)
    [case] = result["cases"]
    assert result["task"] == "segmentation"
    assert case["uncertainty_method"].startswith(("flip test-time augmentation", "Monte Carlo dropout"))
    for key in ("lesion_fraction", "lesion_pixels", "components", "mean_uncertainty_in_mask", "ood"):
        assert key in case
    assert case["lesion_fraction"] > 0 and case["components"] >= 1
    assert 0.0 <= case["mean_uncertainty_in_mask"] <= 1.0
    assert (tmp_path / "s" / case["png"]).is_file() and "lesion" in case["rationale"]


def test_detection_explanation_gives_the_box_score_and_box_head_map(seg_runs, tmp_path):
    _root, data, _seg, det, _cls = seg_runs
    result = medlens.explain(det, [data / "P01" / "P01_2.tif"], tmp_path / "d", progress=False)
    [case] = result["cases"]
    assert len(case["box"]) == 4 and 0.0 <= case["box_score"] <= 1.0
    assert case["method"].startswith("gradcam") and case["layer"] and len(case["peak"]) == 2
    assert (tmp_path / "d" / case["png"]).is_file()


def test_localisation_scores_the_maps_against_the_lesions_with_baselines(seg_runs, tmp_path):
    _root, data, seg, _det, cls = seg_runs
    result = medlens.explain(cls, [], tmp_path / "l", localisation=data, n_bootstrap=50, progress=False)
    loc = result["localisation"]
    for key in ("pointing_game", "energy_in_mask", "deletion_auc", "baseline_centre", "baseline_random"):
        assert set(loc[key]) >= {"value", "ci95"}, key
        assert 0.0 <= loc[key]["value"] <= 1.0
    val_patients = set(pd.read_csv(cls / "manifest.csv").query("split == 'val'")["patient_id"].astype(str))
    assert 0 < loc["n_patients"] <= len(val_patients) and loc["split"] == "val"
    assert json.loads((tmp_path / "l" / "explain.json").read_text())["localisation"]["n_slices"] > 0
    with pytest.raises(MedlensError, match="scores a classifier"):
        medlens.explain(seg, [], tmp_path / "x", localisation=data)


def test_a_nifti_volume_is_explained_by_a_3d_run(tmp_path):
    data = make_spheres(tmp_path / "vol", n_cases=4)
    run = medlens.train(
        data,
        tmp_path / "run3d",
        task="segmentation",
        model="unet",
        epochs=2,
        batch_size=4,
        model_args=TINY_UNET,
        patch_size=[16, 16, 16],
        samples_per_volume=2,
        progress=False,
    )
    volume = data / "imagesTr" / "case0.nii.gz"
    flat = tmp_path / "flat.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(flat)
    result = medlens.explain(run, [volume, flat], tmp_path / "o", progress=False)
    case, wrong = result["cases"]
    assert wrong["input"] == str(flat) and "3D model needs a NIfTI volume" in wrong["error"]
    assert case["input"] == str(volume) and case["spatial_dims"] == 3
    assert case["lesion_ml"] >= 0 and "mean_uncertainty_in_mask" in case
    assert (tmp_path / "o" / case["png"]).is_file()
    assert "2D runs" in result["index_note"]  # said, not silently missing
