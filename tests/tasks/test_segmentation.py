"""Segmentation through the shared loop: 2D ellipses and 3D spheres learnt to Dice > 0.9, resize in/out,
the NIfTI affine kept through predict, joint image/mask augmentation, older checkpoints' specs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from seg_phantoms import ellipse_pair, make_kaggle, make_spheres

from medlens.data.spec import PreprocessingSpec
from medlens.evaluation.seg_metrics import segmentation_case_metrics
from medlens.pipeline.steps import train

TINY_UNET = {"channels": [8, 16, 32], "num_res_units": 1}
AFFINE = np.array([[0.9, 0, 0, -12.0], [0, 1.1, 0, 30.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("seg2d")
    data = make_kaggle(root / "data", n_patients=10, n_slices=6, size=32)
    run = train(
        data,
        root / "run",
        task="segmentation",
        model="unet",
        image_size=32,
        epochs=15,
        batch_size=8,
        lr=0.01,
        model_args=TINY_UNET,
        progress=False,
    )
    return root, run


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("seg3d")
    data = make_spheres(root / "data", n_cases=8, affine=AFFINE)
    run = train(
        data,
        root / "run",
        task="segmentation",
        model="unet",
        epochs=20,
        batch_size=8,
        lr=0.01,
        model_args=TINY_UNET,
        patch_size=[16, 16, 16],
        samples_per_volume=4,
        progress=False,
    )
    return root, run


def test_2d_ellipses_reach_dice_above_0_9_with_a_patient_level_split(run_2d):
    _, run = run_2d
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "segmentation" and summary["split"] == "val"
    assert summary["metrics"]["dice_patient"]["value"] > 0.9
    assert set(summary["metrics"]) >= {"dice_patient", "dice_case", "iou_case", "hd95"}
    lo, hi = summary["metrics"]["dice_patient"]["ci95"]
    assert lo <= summary["metrics"]["dice_patient"]["value"] <= hi
    assert "are both empty" in summary["empty_mask_rule"]
    import pandas as pd

    manifest = pd.read_csv(run / "manifest.csv")
    sides = manifest.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all()  # every patient's slices on one side of the split
    assert {c["patient_id"] for c in summary["cases"]} == set(
        manifest.loc[manifest["split"] == "val", "patient_id"]
    )
    html = (run / "report.html").read_text()
    assert "Dice per patient" in html and "Worst patients" in html and "data:image/png;base64" in html


def test_model_trained_at_32px_segments_a_64px_image(run_2d, tmp_path):
    from medlens.inference.predict import predict

    _, run = run_2d
    image, mask = ellipse_pair(np.random.default_rng(42), 64)
    Image.fromarray(image).save(tmp_path / "big.png")
    [record] = predict(run, [tmp_path / "big.png"], out_dir=tmp_path / "out")
    predicted = np.asarray(Image.open(record["mask"]))
    assert predicted.shape == (64, 64) and set(np.unique(predicted)) <= {0, 255}
    assert segmentation_case_metrics(predicted > 0, mask > 0)["dice"] > 0.9
    assert (tmp_path / "out" / "big_overlay.png").is_file()


def test_3d_spheres_reach_dice_above_0_9(run_3d):
    _, run = run_3d
    summary = json.loads((run / "summary.json").read_text())
    assert summary["spatial_dims"] == 3 and summary["metrics"]["dice_patient"]["value"] > 0.9
    assert "mm" in summary["metrics"]["hd95"]["note"]  # distances use the volumes' spacing
    spec = json.loads((run / "train.json").read_text())["spec"]
    assert spec["spatial_dims"] == 3 and spec["patch_size"] == [16, 16, 16] and spec["intensity"] == "volume"


def test_predicted_nifti_keeps_the_input_affine(run_3d, tmp_path):
    from medlens.inference.predict import predict
    from medlens.io.volumes import read_volume

    root, run = run_3d
    image = root / "data" / "imagesTr" / "case0.nii.gz"
    [record] = predict(run, [image], out_dir=tmp_path / "pred")
    mask, affine, _ = read_volume(record["mask"])
    truth = read_volume(root / "data" / "labelsTr" / "case0.nii.gz")[0]
    np.testing.assert_allclose(affine, AFFINE)
    assert mask.shape == truth.shape
    assert segmentation_case_metrics(mask[0], truth[0])["dice"] > 0.85
    assert (tmp_path / "pred" / "case0_overlay.png").is_file()


def test_resampled_3d_training_predicts_on_the_original_grid(tmp_path, one_thread):
    from medlens.inference.predict import predict
    from medlens.io.volumes import read_volume

    data = make_spheres(tmp_path / "data", n_cases=4, shape=(24, 24, 16), affine=AFFINE)
    run = train(
        data,
        tmp_path / "run",
        task="segmentation",
        model="unet",
        epochs=1,
        batch_size=4,
        model_args=TINY_UNET,
        spacing=[1.8, 2.2, 2.5],
        progress=False,
    )
    spec = json.loads((run / "train.json").read_text())["spec"]
    # 24 voxels of 0.9 mm (x) and 1.1 mm (y) become 12 at 1.8 and 2.2 mm; z keeps 16 at 2.5 mm.
    assert spec["spacing"] == [1.8, 2.2, 2.5] and spec["patch_size"] == [12, 12, 16]
    [record] = predict(run, [data / "imagesTr" / "case1.nii.gz"], out_dir=tmp_path / "p")
    assert read_volume(record["mask"])[0].shape == (1, 24, 24, 16)


def test_joint_augmentation_moves_image_and_mask_together():
    from medlens.data.augment import AugmentSpec, augment_pair

    x = torch.zeros(4, 1, 24, 24)
    x[:, :, 6:14, 8:18] = 1.0
    mask = (x[:, 0] > 0).to(torch.uint8)
    spec = AugmentSpec(brightness=0, contrast=0)
    image, labels = augment_pair(x, mask, spec, torch.Generator().manual_seed(3))
    again = augment_pair(x, mask, spec, torch.Generator().manual_seed(3))
    assert torch.equal(labels, again[1]) and labels.dtype == torch.uint8
    assert set(labels.unique().tolist()) <= {0, 1} and not torch.equal(labels, mask)
    agreement = ((image[:, 0] > 0.5) == labels.bool()).float().mean()
    assert agreement > 0.98  # the same affine: the warped mask lies on the warped square


def test_spec_of_an_older_checkpoint_still_loads():
    old = {
        "image_size": 64,
        "channels": 1,
        "mean": [0.5],
        "std": [0.25],
        "class_names": ["a", "b"],
        "task": "classification",
    }
    spec = PreprocessingSpec.from_dict(old)
    assert spec.spatial_dims == 2 and spec.patch_size is None and spec.intensity == "dataset"
    assert spec.num_outputs == 2 and PreprocessingSpec.from_dict(spec.to_dict()) == spec
