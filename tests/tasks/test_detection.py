"""Detection: boxes from masks (torch and numpy agree), box-aware augmentation, a boxes CSV source, a few
iterations of boxnet through the shared loop, and the prediction writer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from seg_phantoms import ellipse_pair, make_kaggle

from medlens.errors import MedlensError
from medlens.pipeline.steps import train
from medlens.tasks.boxes import mask_to_box
from medlens.tasks.detection import box_masks, boxes_from_masks, decode_boxes

TINY_BOXNET = {"widths": [16, 32], "grid": 4, "hidden": 64}


def test_torch_boxes_match_mask_to_box():
    rng = np.random.default_rng(0)
    masks = np.stack([ellipse_pair(rng, 20)[1] > 0 for _ in range(5)] + [np.zeros((20, 20), bool)])
    boxes, valid = boxes_from_masks(torch.from_numpy(masks))
    assert valid.tolist() == [True] * 5 + [False]
    for m, b in zip(masks[:5], boxes[:5]):
        np.testing.assert_allclose(b.numpy() * 20, mask_to_box(m))


def test_box_masks_round_trip_and_decoded_boxes_are_ordered():
    boxes = np.array([[2.0, 4.0, 10.0, 12.0], [0.0, 0.0, 40.0, 20.0]])
    masks = box_masks(boxes, np.array([[16, 16], [20, 40]]), 16)
    recovered, _ = boxes_from_masks(torch.from_numpy(masks))
    np.testing.assert_allclose(recovered.numpy(), [[2 / 16, 4 / 16, 10 / 16, 12 / 16], [0, 0, 1, 1]])
    decoded = decode_boxes(torch.randn(8, 4) * 3)
    assert (decoded[:, 2] > decoded[:, 0]).all() and (decoded[:, 3] > decoded[:, 1]).all()


def test_augmented_box_follows_the_warped_image():
    from medlens.data.augment import AugmentSpec
    from medlens.data.spec import PreprocessingSpec
    from medlens.tasks.detection import DetectionTask

    x = torch.zeros(3, 1, 32, 32, dtype=torch.uint8)
    x[:, :, 8:20, 10:24] = 255
    masks = (x[:, 0] > 0).to(torch.uint8)
    spec = PreprocessingSpec(image_size=32, task="detection")
    image, boxes, valid = DetectionTask().prepare_batch(
        (x, masks), spec, AugmentSpec(), torch.Generator().manual_seed(5)
    )
    bright = image[:, 0] > image[:, 0].mean(dim=(1, 2), keepdim=True)
    expected, _ = boxes_from_masks(bright.to(torch.uint8))
    assert valid.all() and torch.allclose(boxes, expected, atol=1.5 / 32)  # no rotation: boxes stay tight


def test_boxnet_learns_ellipse_boxes_and_writes_predictions(tmp_path, one_thread):
    from medlens.inference.predict import predict

    data = make_kaggle(tmp_path / "data", n_patients=12, n_slices=6, size=32)
    run = train(
        data,
        tmp_path / "run",
        task="detection",
        model="boxnet",
        image_size=32,
        epochs=15,
        batch_size=8,
        lr=0.01,
        augment_strength=1.0,  # the standard ranges this test was tuned with (the plan halves them at 32 px)
        boxes_from_masks=True,
        model_args=TINY_BOXNET,
        progress=False,
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "detection" and set(summary["metrics"]) == {"iou_mean", "iou50_rate"}
    assert summary["metrics"]["iou_mean"]["value"] > 0.6 and summary["metrics"]["iou50_rate"]["value"] > 0.8
    assert (
        summary["cases_without_box"] == 0
    )  # counted in train.json; the run's manifest keeps boxed cases only
    assert json.loads((run / "train.json").read_text())["cases_without_box"] == 24
    case = summary["cases"][0]
    assert len(case["target"]) == 4 and len(case["prediction"]) == 4 and 0 <= case["iou"] <= 1
    assert "Worst cases" in (run / "report.html").read_text()
    image = next((data / "P00").glob("P00_1.tif"))
    [record] = predict(run, [image], out_dir=tmp_path / "boxes")
    assert len(record["box"]) == 4 and (tmp_path / "boxes" / "P00_1_box.png").is_file()


def _boxes_csv(tmp_path, rows) -> str:
    for name in {r[0] for r in rows}:
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / name)
    path = tmp_path / "boxes.csv"
    pd.DataFrame(rows, columns=["image", "x0", "y0", "x1", "y1"]).to_csv(path, index=False)
    return path


def test_boxes_csv_is_a_detection_source(tmp_path):
    from medlens.data.ingest import ingest

    path = _boxes_csv(tmp_path, [("a.png", 1, 2, 8, 9), ("b.png", 0, 0, 16, 16)])
    manifest = ingest(path, require_labels=False)
    assert manifest.source.startswith("boxes CSV") and manifest.df["x1"].tolist() == [8, 16]


@pytest.mark.parametrize(
    "row,message",
    [
        (("a.png", 5, 2, 3, 9), r"case a: box \[5, 2, 3, 9\] is not a box"),
        (("a.png", "left", 2, 3, 9), "box value x0='left' of image a.png is not a number"),
    ],
)
def test_bad_boxes_name_the_case(tmp_path, row, message):
    path = _boxes_csv(tmp_path, [row, ("b.png", 0, 0, 16, 16)])
    with pytest.raises(MedlensError, match=message):
        train(
            path, tmp_path / "run", task="detection", model="boxnet", image_size=16, epochs=1, progress=False
        )
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_masks_without_the_flag_are_refused(tmp_path):
    data = make_kaggle(tmp_path / "data", n_patients=2, n_slices=2, size=16)
    with pytest.raises(MedlensError, match="has masks but no boxes; pass --boxes-from-masks"):
        train(data, tmp_path / "run", task="detection", model="boxnet", epochs=1, progress=False)
    with pytest.raises(MedlensError, match="model 'boxnet' is a detection model"):
        train(data, tmp_path / "run", task="segmentation", model="boxnet", epochs=1, progress=False)
