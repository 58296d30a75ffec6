"""End-to-end CLI for segmentation (2D and 3D) and detection, the classifier-gated pipeline, the audit of
segmentation sources, and every bad input as one line with exit code 2 and nothing half-written."""

from __future__ import annotations

import json
import shutil
import sys
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from dicom_helpers import write_series
from PIL import Image
from seg_phantoms import make_kaggle, make_spheres

from medlens.cli import main

UNET = ["--model", "unet", "--model-arg", "channels=8,16,32", "--model-arg", "num_res_units=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """1-epoch segmentation (2D, 3D), detection and gate-classifier runs trained through the CLI."""
    root = tmp_path_factory.mktemp("segcli")
    kaggle = make_kaggle(root / "kaggle", n_patients=8, n_slices=4, size=32)
    spheres = make_spheres(root / "spheres", n_cases=4)
    commands = {
        "seg": ["train", kaggle, "-o", root / "seg", "--task", "segmentation", *UNET, "--image-size", "32"],
        "seg3d": [
            "train",
            spheres,
            "-o",
            root / "seg3d",
            "--task",
            "segmentation",
            *UNET,
            "--patch-size",
            "16,16,16",
        ],
        "det": [
            "train",
            kaggle,
            "-o",
            root / "det",
            "--task",
            "detection",
            "--model",
            "boxnet",
            "--boxes-from-masks",
            "--image-size",
            "32",
            "--model-arg",
            "widths=16,32",
        ],
        "labels": ["convert", "masks-to-labels", kaggle, root / "labels.csv"],
        "cls": ["train", root / "labels.csv", "-o", root / "cls", "--image-size", "32"],
    }
    mp = pytest.MonkeyPatch()
    for name, args in commands.items():
        extra = [] if name == "labels" else ["--epochs", "1", "--quiet"]
        mp.setattr(sys, "argv", ["medlens", *map(str, args + extra)])
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code in (0, None), name
    mp.undo()
    return SimpleNamespace(
        root=root, kaggle=kaggle, spheres=spheres, **{k: root / k for k in ("seg", "seg3d", "det", "cls")}
    )


def test_segmentation_train_evaluate_predict(runs, monkeypatch, capsys, tmp_path):
    for name in ("model.pt", "summary.json", "report.html", "predictions.csv", "figures/examples.png"):
        assert (runs.seg / name).is_file(), name
    code, out, err = run_cli(
        monkeypatch, capsys, "evaluate", runs.seg, "-o", tmp_path / "ev", "--bootstrap", "50", "--quiet"
    )
    assert code == 0, err
    assert "dice_patient" in out
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["schema"] == "medlens.summary/1" and summary["task"] == "segmentation"
    assert summary["n_cases"] == len(summary["cases"]) and "dice" in summary["cases"][0]
    image = runs.kaggle / "P00" / "P00_1.tif"
    code, out, err = run_cli(monkeypatch, capsys, "predict", runs.seg, image, "-o", tmp_path / "pr", "--json")
    assert code == 0, err
    [record] = json.loads(out)
    assert np.asarray(Image.open(record["mask"])).shape == (32, 32)
    assert sorted(p.name for p in (tmp_path / "pr").iterdir()) == ["P00_1_mask.png", "P00_1_overlay.png"]


def test_3d_run_predicts_a_dicom_series_with_its_affine(runs, monkeypatch, capsys, tmp_path):
    summary = json.loads((runs.seg3d / "summary.json").read_text())
    assert summary["spatial_dims"] == 3 and summary["inference_seconds_per_case"] > 0
    write_series(tmp_path / "series", [0.0, 2.0, 4.0, 6.0, 8.0])
    code, out, err = run_cli(
        monkeypatch, capsys, "predict", runs.seg3d, tmp_path / "series", "-o", tmp_path / "p", "--json"
    )
    assert code == 0, err
    mask = nib.load(json.loads(out)[0]["mask"])
    from medlens.io.dicom_series import read_dicom_series

    volume, affine, _ = read_dicom_series(tmp_path / "series")
    assert mask.shape == volume.shape[1:]
    np.testing.assert_allclose(mask.affine, affine)


def test_detection_train_evaluate_predict(runs, monkeypatch, capsys, tmp_path):
    summary = json.loads((runs.det / "summary.json").read_text())
    assert summary["task"] == "detection" and set(summary["metrics"]) == {"iou_mean", "iou50_rate"}
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        runs.det,
        "--data",
        runs.kaggle,
        "-o",
        tmp_path / "ev",
        "--bootstrap",
        "20",
        "--quiet",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "ev" / "summary.json").read_text())["cases_without_box"] == 8
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "predict",
        runs.det,
        runs.kaggle / "P01" / "P01_2.tif",
        "-o",
        tmp_path / "b",
        "--json",
    )
    assert code == 0, err
    box = json.loads(out)[0]["box"]
    assert len(box) == 4 and 0 <= box[0] < box[2] <= 32


def test_gated_pipeline_predict_and_evaluate(runs, monkeypatch, capsys, tmp_path):
    files = [runs.kaggle / "P02" / f"P02_{n}.tif" for n in (1, 2, 3)]
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "predict",
        "--gate",
        runs.cls,
        "--segment",
        runs.seg,
        *files,
        "-o",
        tmp_path / "g",
        "--json",
    )
    assert code == 0, err
    records = json.loads(out)
    assert all(0 <= r["tumour_probability"] <= 1 for r in records)
    for r in records:
        assert r["segmented"] == (r["tumour_probability"] >= 0.5)
        if not r["segmented"]:
            assert r["foreground_pixels"] == 0 and not np.asarray(Image.open(r["mask"])).any()
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        runs.seg,
        "--gate",
        runs.cls,
        "-o",
        tmp_path / "ev",
        "--bootstrap",
        "20",
        "--quiet",
    )
    assert code == 0, err
    pipeline = json.loads((tmp_path / "ev" / "summary.json").read_text())["pipeline"]
    assert (
        pipeline["negative_class"] == "notumor"
        and pipeline["false_positive_slices"] <= pipeline["false_positive_slices_without_gate"]
    )
    assert "false-positive slices" in out


class _BrightnessNet(torch.nn.Module):
    """Stub classifier: "tumour" when the image is brighter than average."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.mean(dim=(1, 2, 3)) * 50
        return torch.stack([-score, score], dim=1)


def test_gate_sends_only_positives_to_the_segmenter(runs, tmp_path):
    from medlens.data.spec import PreprocessingSpec
    from medlens.models.checkpoint import LoadedModel, load_model
    from medlens.tasks.gate import Gate
    from medlens.tasks.segmentation import write_predictions

    spec = PreprocessingSpec(image_size=32, mean=(0.3,), std=(0.2,), class_names=("notumor", "tumour"))
    stub = LoadedModel(model=_BrightnessNet(), spec=spec, name="brightness", options={}, meta={})
    gate = Gate(stub, "notumor", threshold=0.5)
    Image.fromarray(np.full((32, 32), 10, np.uint8)).save(tmp_path / "dark.png")
    Image.fromarray(np.full((32, 32), 250, np.uint8)).save(tmp_path / "bright.png")
    dark, bright = write_predictions(
        load_model(runs.seg), [tmp_path / "dark.png", tmp_path / "bright.png"], tmp_path / "out", gate=gate
    )
    assert not dark["segmented"] and dark["foreground_pixels"] == 0 and dark["tumour_probability"] < 0.5
    assert bright["segmented"] and bright["tumour_probability"] > 0.5


def test_audit_accepts_slices_and_volumes_with_their_masks(runs, monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "audit", runs.kaggle, "-o", tmp_path / "a", "--quiet")
    assert code == 0, err
    slices = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert slices["n_images"] == 32 and "volumes" not in slices
    assert slices["masks"]["n_checked"] == 32 and slices["masks"]["n_problems"] == 0
    assert slices["masks"]["n_empty"] == 8  # every third slice of 4 per patient: slice 3 of 8 patients
    code, out, err = run_cli(monkeypatch, capsys, "audit", runs.spheres, "-o", tmp_path / "b", "--quiet")
    assert code == 0, err
    volumes = json.loads((tmp_path / "b" / "audit.json").read_text())
    assert volumes["n_images"] == volumes["n_readable"] == 4 and volumes["unreadable"] == []
    assert volumes["volumes"]["spacings"] == {"1x1x1": 4} and volumes["volumes"]["shapes"] == {"24x24x16": 4}
    assert volumes["masks"]["n_checked"] == 4 and volumes["masks"]["problems"] == []
    assert volumes["masks"]["n_empty"] == 0 and volumes["masks"]["foreground_fraction"]["n"] == 4
    assert "volumes: 4, spacings 1x1x1 mm: 4" in out


def _break(kind: str, root):
    """A copy of a small kaggle tree with one defect (a 2D NIfTI file among volumes is skipped instead: see
    tests/tasks/test_volume_prepare.py)."""
    data = make_kaggle(root / "d", n_patients=3, n_slices=3, size=16)
    mask = data / "P00" / "P00_2_mask.tif"
    if kind == "shape":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(mask)
    elif kind == "values":
        Image.fromarray(np.full((16, 16), 128, np.uint8)).save(mask)
    elif kind == "missing":
        mask.unlink()
    return data


@pytest.mark.parametrize(
    "kind,message",
    [
        ("shape", "case P00_2: mask shape (8, 8) does not match image shape (16, 16)"),
        ("values", "case P00_2: mask values [128] are not binary"),
        ("missing", "case P00_2: mask"),
    ],
)
def test_bad_training_input_is_one_line_and_leaves_no_run(kind, message, monkeypatch, capsys, tmp_path):
    data = _break(kind, tmp_path)
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        data,
        "-o",
        tmp_path / "r",
        "--task",
        "segmentation",
        *UNET,
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--quiet",
    )
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--image-size", "18"], "--image-size 18 is not a multiple of 4, which model unet needs"),
        (["--patch-size", "16,16"], "--patch-size needs 3 sides"),
        (["--task", "segment"], "--task must be one of classification, segmentation, detection"),
        (["--model-arg", "channels"], "--model-arg needs KEY=VALUE"),
    ],
)
def test_bad_options_are_one_line(args, message, runs, monkeypatch, capsys, tmp_path):
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        runs.kaggle,
        "-o",
        tmp_path / "r",
        *UNET,
        "--epochs",
        "1",
        "--quiet",
        *(["--task", "segmentation"] if "--task" not in args else []),
        *args,
    )
    assert code == 2 and message in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "kind,message",
    [
        ("gap", "missing slice in series"),
        ("orientation", "mixed orientations in series"),
    ],
)
def test_broken_dicom_series_costs_its_own_row_only(kind, message, runs, monkeypatch, capsys, tmp_path):
    if kind == "gap":
        write_series(tmp_path / "series", [0.0, 2.0, 4.0, 8.0, 10.0])
    else:
        write_series(
            tmp_path / "series", [0.0, 2.0, 4.0, 6.0], iops=[[1, 0, 0, 0, 1, 0]] * 3 + [[1, 0, 0, 0, 0, -1]]
        )
    good = runs.spheres / "imagesTr" / "case0.nii.gz"  # one broken series costs its own row only
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "predict",
        runs.seg3d,
        good,
        tmp_path / "series",
        "-o",
        tmp_path / "out",
        "--json",
    )
    assert code == 2, err
    rows = json.loads(out)
    assert "mask" in rows[0] and message in rows[1]["error"]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["case0_mask.nii.gz", "case0_overlay.png"]  # the good volume's, nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "series"]


def test_gate_must_be_a_classifier_with_a_negative_class(runs, monkeypatch, capsys, tmp_path):
    image = runs.kaggle / "P00" / "P00_1.tif"
    code, _, err = run_cli(monkeypatch, capsys, "predict", "--gate", runs.seg, "--segment", runs.seg, image)
    assert code == 2 and "the gate must be a classifier" in err
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "predict",
        "--gate",
        runs.cls,
        "--segment",
        runs.seg,
        image,
        "--negative-class",
        "healthy",
    )
    assert code == 2 and "--negative-class 'healthy' is not a class of gate" in err
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_classifier_on_slices_bootstraps_over_patients(runs):
    """The gate classifier's cases are slices of 8 patients: its intervals resample patients."""
    summary = json.loads((runs.cls / "summary.json").read_text())
    val_patients = {c["patient_id"] for c in summary["cases"]}
    assert len(val_patients) < summary["n_cases"]
    assert (
        summary["bootstrap"]["method"]
        == f"percentile, patients ({len(val_patients)}) resampled with replacement"
    )


def test_segmentation_and_detection_cohorts_with_metadata(runs, monkeypatch, capsys, tmp_path):
    """--cohorts with a --metadata CSV joined on patient_id: Dice (segmentation) and IoU (detection) per
    cohort with intervals, fairness ratios; segmentation also gets sampled per-pixel calibration."""
    patients = sorted(p.name for p in runs.kaggle.iterdir() if p.is_dir())
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "patient_id,sex\n" + "".join(f"{p},{'F' if i % 2 else 'M'}\n" for i, p in enumerate(patients))
    )
    for run, metric in ((runs.seg, "dice_case"), (runs.det, "iou_case")):
        out = tmp_path / run.name
        args = ["evaluate", run, "--data", runs.kaggle, "-o", out, "--bootstrap", "50", "--quiet"]
        code, _, err = run_cli(
            monkeypatch, capsys, *args, "--cohorts", "sex", "--metadata", meta, "--min-cell", "2"
        )
        assert code == 0, err
        s = json.loads((out / "summary.json").read_text())
        groups = {g["name"]: g for g in s["cohorts"]["columns"]["sex"]["groups"]}
        assert set(groups) == {"F", "M"} and groups["F"]["n_patients"] == len(patients) // 2
        ref = s["cohorts"]["columns"]["sex"]["reference"]
        assert groups[ref]["ratio"][metric] == pytest.approx(1.0)
        assert groups["F"]["metrics"][metric]["value"] is not None
        assert (out / "model_card.md").is_file()
        assert "<h2>Cohorts and fairness</h2>" in (out / "report.html").read_text()
    seg = json.loads((tmp_path / "seg" / "summary.json").read_text())
    assert seg["calibration"]["unit"].startswith("pixels") and 0 <= seg["calibration"]["ece"] <= 1
    code, _, err = run_cli(
        monkeypatch, capsys, "evaluate", runs.seg, "--threshold", "0.5", "-o", tmp_path / "x"
    )
    assert code == 2 and "--threshold applies to classification runs" in err
