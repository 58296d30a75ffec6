"""The hostile-input corpus: one Case per broken, hostile or odd input, each built in its own folder.

``Case.build(ctx)`` writes the files it needs under ``ctx.tmp`` and returns the medlens arguments.
The test runs them in-process and checks the exit code, that no traceback is printed, and ``message``:
in the terminal output, or in the file ``where`` names (train.json, audit.json) for a file skipped inside
a dataset.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from badinput import make

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest helpers, seg phantoms
from conftest import make_class_folders

TRAIN = ["--model", "logreg", "--epochs", "1", "--image-size", "16", "--quiet"]
UNET3D = [
    "--task",
    "segmentation",
    "--model",
    "unet",
    "--model-arg",
    "channels=4,8",
    "--model-arg",
    "num_res_units=0",
    "--patch-size",
    "16,16,16",
    "--epochs",
    "1",
    "--quiet",
]


@dataclass
class Ctx:
    """One case's folder plus the shared trained runs (trained once per module, on first use)."""

    tmp: Path
    runs: Callable[[str], Path]

    @property
    def run(self) -> Path:
        return self.runs("cls")

    @property
    def run3d(self) -> Path:
        return self.runs("seg3d")

    def data(self, n: int = 6, **kw) -> Path:
        """Two-class folders cyst/ and normal/ of n 16-px images each."""
        return make_class_folders(self.tmp / "data", n_per_class=n, size=16, **kw)

    def spheres(self, n: int = 4) -> Path:
        from seg_phantoms import make_spheres

        return make_spheres(self.tmp / "vols", n_cases=n, shape=(16, 16, 16))

    def config(self, **values) -> Path:
        path = self.tmp / "config.yaml"
        path.write_text(yaml.safe_dump(values))
        return path


@dataclass
class Case:
    id: str
    build: Callable[[Ctx], list]
    code: int
    message: str
    where: str = ""  # "" = stdout + stderr; else a file under ctx.tmp whose text must hold the message
    check: Callable[[Ctx, str], None] | None = None  # more checks: (ctx, stdout + stderr)
    xfail: str = ""  # the right behaviour is asserted; the current code does otherwise (a bug to fix)
    skip: str = ""
    doc: str = ""  # the command, as docs/robustness.md shows it (filled from the build when empty)


CASES: list[Case] = []


def case(id: str, code: int, message: str, **kw):
    def register(build):
        CASES.append(Case(id, build, code, message, **kw))
        return build

    return register


def predict(ctx: Ctx, *files) -> list:
    return ["predict", ctx.run, *files]


def in_dataset(ctx: Ctx, builder, name: str, cls: str = "normal") -> Path:
    """Class folders with one extra file ``name`` in class ``cls``, written by ``builder(path)``."""
    data = ctx.data()
    builder(data / cls / name)
    return data


def train_with(builder, name: str) -> Callable[[Ctx], list]:
    return lambda ctx: ["train", in_dataset(ctx, builder, name), "-o", ctx.tmp / "run", *TRAIN]


def audit_with(builder, name: str) -> Callable[[Ctx], list]:
    return lambda ctx: ["audit", in_dataset(ctx, builder, name), "-o", ctx.tmp / "audit", "--quiet"]


def sources_kept(*names: str):
    def check(ctx: Ctx, _out: str) -> None:
        for n in names:
            assert (ctx.tmp / n).exists(), f"{n} was removed"

    return check


def one_line_error(ctx: Ctx, out: str) -> None:
    lines = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and out.strip() == lines[0], out


def path_named_once(name: str):
    def check(ctx: Ctx, out: str) -> None:
        line = next(ln for ln in out.splitlines() if name in ln)
        assert line.count(name) == 1, line

    return check


# ---------------------------------------------------------------------------------------------------------
# Decompression bombs and the decoded-size limit
# ---------------------------------------------------------------------------------------------------------

BOMBS = {
    "png": (make.bomb_png, "b.png", "declares a 40000 × 40000 image (1.5 GiB decoded), above the 512 MiB"),
    "tiff": (make.bomb_tiff, "b.tif", "declares a 40000 × 40000 image (1.5 GiB decoded), above the 512 MiB"),
    "deflate-tiff": (make.deflate_bomb_tiff, "d.tif", "declares a 30000 × 30000 image (858.3 MiB decoded)"),
}
for kind, (builder, name, msg) in BOMBS.items():
    case(f"predict-bomb-{kind}", 2, msg)(
        lambda ctx, b=builder, n=name: predict(ctx, b(ctx.tmp / n), "--json")
    )
    case(f"train-bomb-{kind}-in-dataset", 0, msg, where="run/train.json")(train_with(builder, name))
    case(f"audit-bomb-{kind}-in-dataset", 0, msg)(audit_with(builder, name))

case("predict-bomb-png-table", 2, "b.png: declares a 40000 × 40000 image", check=one_line_error)(
    lambda ctx: predict(ctx, make.bomb_png(ctx.tmp / "b.png"))
)
case("audit-bomb-names-path-once", 0, "skipped 1 of 13 files: 1 too large", check=path_named_once("b.png"))(
    audit_with(make.bomb_png, "b.png")
)
case("train-bomb-terminal-mentions-skip", 0, "skipped 1 of 13 files: 1 too large — see")(
    train_with(make.bomb_png, "b.png")
)
case("evaluate-bomb-in-data", 0, "balanced_accuracy")(
    lambda ctx: [
        "evaluate",
        ctx.run,
        "--data",
        in_dataset(ctx, make.bomb_png, "b.png"),
        "-o",
        ctx.tmp / "ev",
        "--bootstrap",
        "10",
        "--quiet",
    ]
)
case("predict-12000px-png-within-limit", 0, '"prediction"')(
    lambda ctx: predict(ctx, make.zeros_png(ctx.tmp / "big.png"), "--json")
)
case(
    "predict-12000px-png-max-image-mb-64",
    2,
    "declares a 12000 × 12000 image (137.3 MiB decoded), above the 64 MiB",
    check=one_line_error,
)(lambda ctx: predict(ctx, make.zeros_png(ctx.tmp / "big.png"), "--max-image-mb", "64"))
case(
    "train-12000px-png-config-limit-64",
    0,
    "declares a 12000 × 12000 image (137.3 MiB decoded), above the 64 MiB",
    where="run/train.json",
)(
    lambda ctx: [
        "train",
        in_dataset(ctx, make.zeros_png, "big.png"),
        "-o",
        ctx.tmp / "run",
        *TRAIN,
        "--config",
        ctx.config(max_image_mb=64),
    ]
)
case("train-config-max-image-mb-negative", 2, "--max-image-mb must be a positive number of MiB")(
    lambda ctx: ["train", ctx.data(), "-o", ctx.tmp / "run", *TRAIN, "--config", ctx.config(max_image_mb=-1)]
)
case("predict-dicom-declares-huge", 2, "declares a 1 × 40000 × 40000 × 1 image")(
    lambda ctx: predict(ctx, make.dicom_huge(ctx.tmp / "huge.dcm"), "--json")
)
case("audit-nifti-declares-huge", 0, "declares a 4000 × 4000 × 4000 volume")(
    lambda ctx: ["audit", _spheres_with(ctx, make.nifti_huge, "huge.nii"), "-o", ctx.tmp / "audit", "--quiet"]
)
case("predict3d-nifti-declares-huge", 2, "declares a 4000 × 4000 × 4000 volume")(
    lambda ctx: ["predict", ctx.run3d, make.nifti_huge(ctx.tmp / "huge.nii"), "-o", ctx.tmp / "pred"]
)


def _spheres_with(ctx: Ctx, builder, name: str, label=None) -> Path:
    """The 3D phantom set plus one case ``name`` (its label a copy of case0's unless given)."""
    root = ctx.spheres()
    builder(root / "imagesTr" / name)
    target = root / "labelsTr" / name
    if label is None:
        ext = ".nii.gz" if name.endswith(".gz") else ".nii"
        shutil.copy(root / "labelsTr" / "case0.nii.gz", target) if ext == ".nii.gz" else make.nifti(
            target, np.zeros((16, 16, 16), np.uint8)
        )
    else:
        label(target)
    return root


# ---------------------------------------------------------------------------------------------------------
# NaN and inf
# ---------------------------------------------------------------------------------------------------------

NAN_MSG = "holds 1 NaN/inf values of 256"
for bad, label in ((np.nan, "nan"), (np.inf, "inf")):
    case(f"predict-{label}-tiff", 2, NAN_MSG)(
        lambda ctx, b=bad: predict(ctx, make.float_tiff(ctx.tmp / "f.tif", b), "--json")
    )
    case(f"train-{label}-tiff-in-dataset", 0, NAN_MSG, where="run/train.json")(
        train_with(lambda p, b=bad: make.float_tiff(p, b), "f.tif")
    )
    case(f"audit-{label}-tiff-in-dataset", 0, NAN_MSG)(
        audit_with(lambda p, b=bad: make.float_tiff(p, b), "f.tif")
    )
case("predict-finite-float-tiff", 0, '"prediction"')(
    lambda ctx: predict(ctx, make.float_tiff(ctx.tmp / "f.tif", None), "--json")
)
case("train-npz-float-nan", 0, "NaN/inf values", where="run/train.json")(
    lambda ctx: [
        "train",
        make.mnist_npz(ctx.tmp / "m.npz", dtype=np.float32, nan=True),
        "-o",
        ctx.tmp / "run",
        *TRAIN,
    ]
)
case("audit-npz-float-nan", 0, "holds 1 NaN/inf values of 256")(
    lambda ctx: [
        "audit",
        make.mnist_npz(ctx.tmp / "m.npz", dtype=np.float32, nan=True),
        "-o",
        ctx.tmp / "a",
        "--quiet",
    ]
)


def _nan_volume(path: Path, all_nan: bool = False) -> Path:
    vol = np.random.default_rng(0).normal(40, 5, (16, 16, 16)).astype(np.float32)
    vol[(slice(None),) * 3 if all_nan else (1, 2, 3)] = np.nan
    return make.nifti(path, vol)


case("audit-nifti-nan-voxels", 0, "the volume holds 1 NaN/inf values of 4,096")(
    lambda ctx: ["audit", _spheres_with(ctx, _nan_volume, "nan.nii.gz"), "-o", ctx.tmp / "a", "--quiet"]
)
case("audit-nifti-all-nan", 0, "the volume holds 4,096 NaN/inf values of 4,096")(
    lambda ctx: [
        "audit",
        _spheres_with(ctx, lambda p: _nan_volume(p, True), "nan.nii.gz"),
        "-o",
        ctx.tmp / "a",
        "--quiet",
    ]
)
case("train3d-nifti-nan-voxels", 0, "the volume holds 1 NaN/inf values of 4,096", where="run/train.json")(
    lambda ctx: ["train", _spheres_with(ctx, _nan_volume, "nan.nii.gz"), "-o", ctx.tmp / "run", *UNET3D]
)
case("predict3d-nifti-all-nan", 2, "the volume holds 4,096 NaN/inf values of 4,096")(
    lambda ctx: ["predict", ctx.run3d, _nan_volume(ctx.tmp / "nan.nii.gz", True), "-o", ctx.tmp / "pred"]
)

# ---------------------------------------------------------------------------------------------------------
# Silent mis-reads: orientation, pages, frames, slices, boxes
# ---------------------------------------------------------------------------------------------------------

case("train-multipage-tiff-note", 0, "5 pages; the first was used", where="run/train.json")(
    train_with(make.multipage_tiff, "pages.tif")
)
case("audit-multipage-tiff-note", 0, "5 pages; the first was used", where="audit/audit.json")(
    audit_with(make.multipage_tiff, "pages.tif")
)
case("audit-gif-frames-note", 0, "3 frames or pages; the first was used", where="audit/audit.json")(
    audit_with(make.gif_frames, "anim.gif")
)
case(
    "train-multiframe-dicom-note",
    0,
    "multi-frame DICOM (10 frames); frame 1 was used",
    where="run/train.json",
)(train_with(lambda p: make.copy_dicom(p, "emri_small.dcm"), "emri.dcm"))
case("predict-multiframe-dicom-2d", 0, '"prediction"')(
    lambda ctx: predict(ctx, make.copy_dicom(ctx.tmp / "emri.dcm", "emri_small.dcm"), "--json")
)
case("predict3d-multiframe-dicom-volume", 0, '"foreground_voxels"')(
    lambda ctx: [
        "predict",
        ctx.run3d,
        make.copy_dicom(ctx.tmp / "emri.dcm", "emri_small.dcm"),
        "-o",
        ctx.tmp / "pred",
        "--json",
    ]
)


def _series_with_gap(ctx: Ctx) -> Path:
    from dicom_helpers import write_series

    write_series(ctx.tmp / "series", [0.0, 2.0, 4.0, 8.0, 10.0, 12.0])
    return ctx.tmp / "series"


case("predict3d-dicom-series-missing-slice", 2, "a gap of 4.00 mm between slice positions 4.00 and 8.00")(
    lambda ctx: ["predict", ctx.run3d, _series_with_gap(ctx), "-o", ctx.tmp / "pred"]
)


def _boxes(ctx: Ctx, rows) -> Path:
    for i in range(6):
        make.gray_png(ctx.tmp / f"im{i}.png", value=40 + 30 * i)
    lines = [f"im{i}.png,2,2,{8 + i},{9 + i}" for i in range(6)] + rows
    return make.csv(ctx.tmp / "boxes.csv", "image,x0,y0,x1,y1\n" + "\n".join(lines) + "\n")


DET = [
    "--task",
    "detection",
    "--model",
    "boxnet",
    "--model-arg",
    "widths=8,16",
    "--image-size",
    "16",
    "--epochs",
    "1",
    "--quiet",
]
case(
    "train-detection-box-outside-image",
    0,
    "box [2, 2, 40, 9] lies outside the 16 x 16 image",
    where="run/train.json",
)(lambda ctx: ["train", _boxes(ctx, ["im0.png,2,2,40,9"]), "-o", ctx.tmp / "run", *DET])
case("train-detection-box-not-a-number", 2, "box value x0='left' of image im0.png is not a number")(
    lambda ctx: ["train", _boxes(ctx, ["im0.png,left,2,9,9"]), "-o", ctx.tmp / "run", *DET]
)

# ---------------------------------------------------------------------------------------------------------
# Wrong datasets
# ---------------------------------------------------------------------------------------------------------


def _all_broken(ctx: Ctx, cls: str | None) -> Path:
    data = ctx.data()
    for p in data.rglob("*.png"):
        if cls is None or p.parent.name == cls:
            p.write_bytes(b"")
    return data


case("train-class-all-broken", 2, "class 'normal' has no readable image in the train split")(
    lambda ctx: ["train", _all_broken(ctx, "normal"), "-o", ctx.tmp / "run", *TRAIN]
)
case("train-every-file-broken", 2, "none of the 12 images in")(
    lambda ctx: ["train", _all_broken(ctx, None), "-o", ctx.tmp / "run", *TRAIN]
)
case("train-one-class", 2, "only one class ('cyst') found")(
    lambda ctx: [
        "train",
        make_class_folders(ctx.tmp / "d", classes=("cyst",), n_per_class=4, size=16),
        "-o",
        ctx.tmp / "run",
        *TRAIN,
    ]
)
case("train-empty-folder", 2, "(the folder is empty)")(
    lambda ctx: ["train", _mkdir(ctx.tmp / "empty"), "-o", ctx.tmp / "run", *TRAIN]
)
case("train-missing-source", 2, "nowhere does not exist; pass a folder of class folders")(
    lambda ctx: ["train", ctx.tmp / "nowhere", "-o", ctx.tmp / "run", *TRAIN]
)
case("audit-exact-duplicate", 0, "1 exact-duplicate groups (2 images)")(
    audit_with(lambda p: shutil.copy(p.parent / "normal_000.png", p), "copy.png")
)


def _leak(ctx: Ctx) -> Path:
    data = make_class_folders(ctx.tmp / "data", n_per_class=8, size=16, split_level=True)
    shutil.copy(data / "train" / "cyst" / "cyst_001.png", data / "test" / "cyst" / "leaked.png")
    return data


case("audit-train-test-leak", 0, "1 cross-split")(
    lambda ctx: ["audit", _leak(ctx), "-o", ctx.tmp / "a", "--quiet"]
)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------------------
# Options and config files
# ---------------------------------------------------------------------------------------------------------


def _gpu_visible() -> bool:
    import torch

    return torch.cuda.is_available()


OPTIONS = {
    "accelerator-gpu": (
        ["--accelerator", "gpu"],
        "--accelerator gpu: no GPU is visible to torch on this machine",
    ),
    "precision-8": (["--precision", "8"], "--precision must be one of"),
    "devices-0": (["--devices", "0"], "--devices must be at least 1 (devices per node), got 0"),
    "strategy-foo": (["--strategy", "foo"], "--strategy must be one of"),
    "image-size-4": (["--image-size", "4"], "--image-size must be between 8 and 1024 pixels, got 4"),
    "lr-0": (["--lr", "0"], "--lr must be positive and below 10, got 0.0"),
    "fraction-2": (["--fraction", "2"], "--fraction must be in (0, 1], got 2.0"),
    "model-unknown": (["--model", "resnet19"], "Did you mean"),
    "patch-size-words": (
        ["--patch-size", "a,b,c"],
        "--patch-size needs comma-separated numbers like 96,96,32",
    ),
    "model-arg-no-equals": (["--model-arg", "channels"], "--model-arg needs KEY=VALUE"),
    "epochs-not-a-number": (["--epochs", "one"], "Invalid value for '--epochs'"),
}
for name, (opts, msg) in OPTIONS.items():
    case(
        f"train-option-{name}",
        2,
        msg,
        skip="a GPU is visible" if name == "accelerator-gpu" and _gpu_visible() else "",
    )(lambda ctx, o=opts: ["train", ctx.data(), "-o", ctx.tmp / "run", *TRAIN, *o])

CONFIGS = {
    "epochs-one": ({"epochs": "one", "model": "logreg", "image_size": 16}, "config key epochs must be"),
    "unknown-key": ({"epoch": 2}, "unknown config key 'epoch'. Did you mean 'epochs'?"),
    "list": (["epochs", 1], "must be a mapping of key: value"),
}
for name, (values, msg) in CONFIGS.items():
    case(f"train-config-{name}", 2, msg)(
        lambda ctx, v=values: [
            "train",
            ctx.data(),
            "-o",
            ctx.tmp / "run",
            "--quiet",
            "--config",
            _yaml(ctx, v),
        ]
    )
case(
    "train-config-binary",
    2,
    "cannot read config",
)(
    lambda ctx: [
        "train",
        ctx.data(),
        "-o",
        ctx.tmp / "run",
        *TRAIN,
        "--config",
        make.csv(ctx.tmp / "c.yaml", b"\x00\xff\xfe: ["),
    ]
)
case("train-config-missing", 2, "cannot read config")(
    lambda ctx: ["train", ctx.data(), "-o", ctx.tmp / "run", *TRAIN, "--config", ctx.tmp / "nothing.yaml"]
)


def _yaml(ctx: Ctx, values) -> Path:
    return make.csv(ctx.tmp / "config.yaml", yaml.safe_dump(values))


case("summary-input-size-0", 2, "--input-size must be between 8 and 1024 pixels for a 2D input, got 0")(
    lambda ctx: ["summary", "cnn-small", "--input-size", "0"]
)
case(
    "summary-input-size-100000",
    2,
    "--input-size must be between 8 and 1024 pixels for a 2D input, got 100000",
)(lambda ctx: ["summary", "cnn-small", "--input-size", "100000"])
case("curve-fractions-words", 2, "--fractions must be numbers like 0.1,0.2,0.3, got 'a,b'")(
    lambda ctx: ["curve", ctx.data(), "-o", ctx.tmp / "c", "--fractions", "a,b", "--quiet"]
)


def _file(ctx: Ctx, name: str = "taken") -> Path:
    return make.csv(ctx.tmp / name, "precious\n")


case("train-o-existing-file", 2, "is a file, not a folder", check=sources_kept("taken"))(
    lambda ctx: ["train", ctx.data(), "-o", _file(ctx), *TRAIN]
)
case("audit-o-existing-file", 2, "is a file, not a folder", check=sources_kept("taken"))(
    lambda ctx: ["audit", ctx.data(), "-o", _file(ctx), "--quiet"]
)
case("evaluate-o-existing-file", 2, "is a file, not a folder", check=sources_kept("taken"))(
    lambda ctx: ["evaluate", ctx.run, "-o", _file(ctx), "--quiet"]
)
case("predict-o-existing-file", 2, "is a file, not a folder", check=sources_kept("taken"))(
    lambda ctx: ["predict", ctx.run, make.gray_png(ctx.tmp / "x.png"), "-o", _file(ctx)]
)
case("convert-o-existing-file", 2, "taken is a file, not a folder", check=sources_kept("taken"))(
    lambda ctx: ["convert", "slices-to-volumes", _kaggle(ctx), _file(ctx), "--quiet"]
)
case("ingest-o-existing-folder", 2, "is a folder; give a file path for the manifest CSV")(
    lambda ctx: ["ingest", ctx.data(), "-o", _mkdir(ctx.tmp / "folder")]
)
case("train-o-existing-run", 2, "already exists; choose another -o or pass --overwrite")(
    lambda ctx: ["train", ctx.data(), "-o", _mkdir(ctx.tmp / "run"), *TRAIN]
)
case("train-o-inside-source", 2, "lies inside the source folder")(
    lambda ctx: ["train", ctx.data(), "-o", ctx.tmp / "data" / "run", *TRAIN]
)
case(
    "train-overwrite-source",
    2,
    "writing there would destroy the input",
    check=sources_kept("data/cyst/cyst_000.png", "data/normal/normal_005.png"),
)(lambda ctx: ["train", ctx.data(), "-o", ctx.tmp / "data", "--overwrite", *TRAIN])
case(
    "train-overwrite-csv-source",
    2,
    "is a file, not a folder; give a folder path for the run directory",
    check=sources_kept("t.csv", "im0.png"),
)(lambda ctx: ["train", _labels_csv(ctx), "-o", ctx.tmp / "t.csv", "--overwrite", *TRAIN])
case(
    "train-overwrite-foreign-folder",
    2,
    "exists and was not written by medlens; refusing to replace it",
    check=sources_kept("mine/thesis.docx"),
)(lambda ctx: ["train", ctx.data(), "-o", _foreign(ctx), "--overwrite", *TRAIN])
case(
    "convert-overwrite-source", 2, "writing there would destroy the input", check=sources_kept("kaggle/P00")
)(lambda ctx: ["convert", "slices-to-volumes", _kaggle(ctx), ctx.tmp / "kaggle", "--overwrite", "--quiet"])
case(
    "convert-overwrite-foreign-folder",
    2,
    "exists and was not written by medlens; refusing to replace it",
    check=sources_kept("mine/thesis.docx"),
)(lambda ctx: ["convert", "slices-to-volumes", _kaggle(ctx), _foreign(ctx), "--overwrite", "--quiet"])


def _foreign(ctx: Ctx) -> Path:
    make.csv(_mkdir(ctx.tmp / "mine") / "thesis.docx", "chapter 1\n")
    return ctx.tmp / "mine"


def _kaggle(ctx: Ctx) -> Path:
    from seg_phantoms import make_kaggle

    return make_kaggle(ctx.tmp / "kaggle", n_patients=2, n_slices=2, size=16)


def _labels_csv(ctx: Ctx, rows: list[str] | None = None) -> Path:
    for i in range(8):
        make.gray_png(ctx.tmp / f"im{i}.png", value=40 + 20 * i)
    rows = [f"im{i}.png,{'ab'[i % 2]}" for i in range(8)] + (rows or [])
    return make.csv(ctx.tmp / "t.csv", "image,label\n" + "\n".join(rows) + "\n")


# ---------------------------------------------------------------------------------------------------------
# --resume
# ---------------------------------------------------------------------------------------------------------


def _interrupted(ctx: Ctx, **cfg) -> Path:
    """An interrupted run: run.partial with its marker, resume.json and a last checkpoint."""
    import json

    from medlens.training.config import TrainConfig
    from medlens.utils.files import write_marker

    partial = _mkdir(ctx.tmp / "run.partial" / "checkpoints")
    (partial / "last.ckpt").write_bytes(b"not really a checkpoint")
    write_marker(partial.parent, "run")
    config = TrainConfig(model="logreg", epochs=1, image_size=16, **cfg).to_dict()
    (partial.parent / "resume.json").write_text(json.dumps({"config": config}, default=str))
    return ctx.tmp / "run"


case(
    "resume-different-model",
    2,
    "it was started with model logreg, not cnn-small",
    check=sources_kept("run.partial/checkpoints/last.ckpt"),
)(lambda ctx: ["train", ctx.data(), "-o", _interrupted(ctx), *TRAIN, "--resume", "--model", "cnn-small"])
case(
    "resume-different-image-size",
    2,
    "it was started with image_size 16, not 24",
    check=sources_kept("run.partial/checkpoints/last.ckpt"),
)(lambda ctx: ["train", ctx.data(), "-o", _interrupted(ctx), *TRAIN, "--resume", "--image-size", "24"])
case("resume-nothing-to-resume", 2, "nothing to resume")(
    lambda ctx: ["train", ctx.data(), "-o", ctx.tmp / "run", *TRAIN, "--resume"]
)

# ---------------------------------------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------------------------------------


def _no_preamble(path: Path) -> Path:
    path.write_bytes(make.dicom_testfile("CT_small.dcm").read_bytes()[132:])
    return path


def _no_force_hint(ctx: Ctx, out: str) -> None:
    assert "force=True" not in out and "pip install" not in out, out


case("predict-dicom-truncated", 2, "truncated file", check=_no_force_hint)(
    lambda ctx: predict(ctx, make.cut(make.copy_dicom(ctx.tmp / "cut.dcm"), 0.6), "--json")
)
case(
    "train-dicom-truncated-in-dataset",
    0,
    "truncated file: the pixel data is shorter",
    where="run/train.json",
)(train_with(lambda p: make.cut(make.copy_dicom(p), 0.6), "cut.dcm"))
case("predict-dicom-no-preamble", 0, '"prediction"', check=_no_force_hint)(
    lambda ctx: predict(ctx, _no_preamble(ctx.tmp / "raw.dcm"), "--json")
)
case(
    "audit-dicom-no-preamble",
    0,
    "no DICOM preamble; read as raw DICOM",
    where="a/audit.json",
    check=_no_force_hint,
)(lambda ctx: ["audit", in_dataset(ctx, _no_preamble, "raw.dcm"), "-o", ctx.tmp / "a", "--quiet"])
case(
    "predict-dicom-header-only",
    2,
    "not a readable DICOM image (no image header after the preamble; corrupted?)",
    check=_no_force_hint,
)(lambda ctx: predict(ctx, make.cut(make.copy_dicom(ctx.tmp / "cut.dcm"), 200), "--json"))
case("predict-dicom-without-pixel-data", 2, "DICOM file without pixel data")(
    lambda ctx: predict(ctx, make.dicom_without_pixels(ctx.tmp / "sr.dcm"), "--json")
)
case("predict-dicom-jpeg2000-compressed", 0, '"prediction"')(
    lambda ctx: predict(ctx, make.copy_dicom(ctx.tmp / "j2k.dcm", "MR_small_jp2klossless.dcm"), "--json")
)

# ---------------------------------------------------------------------------------------------------------
# Run folders and model files
# ---------------------------------------------------------------------------------------------------------


def _random_model(ctx: Ctx) -> Path:
    run = _mkdir(ctx.tmp / "fake-run")
    for name in ("train.json", "config.yaml"):
        shutil.copy(ctx.run / name, run / name)
    (run / "model.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    return run


case("predict-random-bytes-model", 2, "is not a readable PyTorch state dict", check=one_line_error)(
    lambda ctx: ["predict", _random_model(ctx), make.gray_png(ctx.tmp / "x.png")]
)
case("evaluate-random-bytes-model", 2, "is not a readable PyTorch state dict", check=one_line_error)(
    lambda ctx: ["evaluate", _random_model(ctx), "-o", ctx.tmp / "ev", "--quiet"]
)
case("predict-missing-run", 2, "not found; train one with `medlens train SRC -o")(
    lambda ctx: ["predict", ctx.tmp / "norun", make.gray_png(ctx.tmp / "x.png")]
)
case("predict-folder-not-a-run", 2, "no trained model at")(
    lambda ctx: ["predict", ctx.data(), make.gray_png(ctx.tmp / "x.png")]
)
case("evaluate-folder-not-a-run", 2, "no trained model at")(lambda ctx: ["evaluate", ctx.data(), "--quiet"])

# ---------------------------------------------------------------------------------------------------------
# Broken and odd single files
# ---------------------------------------------------------------------------------------------------------

SINGLE = {
    "zero-byte": (lambda p: make.csv(p, b""), "x.png", 2, "zero-byte file"),
    "text-as-png": (lambda p: make.csv(p, "hello, I am text\n"), "x.png", 2, "cannot identify image file"),
    "jpeg-cut-in-half": (lambda p: make.cut(make.exif_jpeg(p, 64, 64, 1)), "x.jpg", 2, "truncated file"),
    "png-cut-in-half": (
        lambda p: make.cut(make.png(p, np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8))),
        "x.png",
        2,
        "truncated file",
    ),
    "tiff-cut": (lambda p: make.cut(make.multipage_tiff(p, 1, 64), 0.5), "x.tif", 2, "truncated file"),
    "missing-file": (lambda p: p, "gone.png", 2, "file not found"),
    "gif-frames": (make.gif_frames, "x.gif", 0, '"prediction"'),
    "png-16-bit": (
        lambda p: make.png(p, (np.arange(256).reshape(16, 16) * 250).astype(np.uint16)),
        "x.png",
        0,
        '"prediction"',
    ),
    "png-rgba": (lambda p: make.png(p, np.full((16, 16, 4), 200, np.uint8)), "x.png", 0, '"prediction"'),
    "png-palette": (
        lambda p: make.png(p, np.full((16, 16, 3), 90, np.uint8), mode="P"),
        "x.png",
        0,
        '"prediction"',
    ),
    "unicode-name": (make.gray_png, "ünïcødé 画像.png", 0, "ünïcødé 画像.png"),
    "name-with-spaces": (make.gray_png, "a file  with spaces.png", 0, "a file  with spaces.png"),
    "npz-index-out-of-range": (
        lambda p: make.mnist_npz(p),
        "m.npz::train_images[99]",
        2,
        "index beyond 12 images",
    ),
    "npz-unknown-key": (lambda p: make.mnist_npz(p), "m.npz::test_images[0]", 2, "no array 'test_images'"),
}
for name, (builder, fname, code, msg) in SINGLE.items():

    def _build(ctx, b=builder, f=fname):
        b(ctx.tmp / f.split("::")[0])
        return predict(ctx, str(ctx.tmp / f), "--json")

    case(f"predict-{name}", code, msg)(_build)

for name in ("zero-byte", "text-as-png", "jpeg-cut-in-half", "png-cut-in-half"):
    builder, fname, _, msg = SINGLE[name]
    case(f"train-{name}-in-dataset", 0, msg, where="run/train.json")(train_with(builder, fname))
    case(f"audit-{name}-in-dataset", 0, msg)(audit_with(builder, fname))
case("train-unicode-and-spaces-in-dataset", 0, "ünïcødé 画像.png", where="run/manifest.csv")(
    lambda ctx: [
        "train",
        in_dataset(ctx, make.gray_png, "ünïcødé 画像.png", "cyst")
        and in_dataset(ctx, make.gray_png, "a b.png"),
        "-o",
        ctx.tmp / "run",
        *TRAIN,
    ]
)


def _symlink_loop(ctx: Ctx) -> Path:
    data = ctx.data()
    os.symlink(data, data / "normal" / "loop")  # a folder link back to the root
    os.symlink(data / "cyst" / "self-a", data / "cyst" / "self-b")
    os.symlink(data / "cyst" / "self-b", data / "cyst" / "self-a")
    return data


case("train-symlink-loop-in-dataset", 0, "val split, 2 cases")(
    lambda ctx: ["train", _symlink_loop(ctx), "-o", ctx.tmp / "run", *TRAIN]
)
case("audit-symlink-loop-in-dataset", 0, "12 images, 12 readable")(
    lambda ctx: ["audit", _symlink_loop(ctx), "-o", ctx.tmp / "a", "--quiet"]
)
case(
    "audit-unreadable-permissions",
    0,
    "Permission denied",
    skip="tests run as root: chmod 000 does not stop root from reading" if os.geteuid() == 0 else "",
)(audit_with(lambda p: (make.gray_png(p), os.chmod(p, 0)), "locked.png"))

# ---------------------------------------------------------------------------------------------------------
# CSV tables
# ---------------------------------------------------------------------------------------------------------

CSVS = {
    "binary": (b"image,label\n\x00\x01\x02\xff\xfe", "is not a text CSV file (it holds binary data)"),
    "empty": (b"", "is empty; it needs a header row (e.g. image,label)"),
    "missing-columns": (b"path_to_file,diagnosis\na.png,x\n", "has no 'image' column"),
    "header-only": (b"image,label\n", "has a header but no rows"),
    "missing-files": (b"image,label\nnope1.png,a\nnope2.png,b\n", "none of the 2 images listed in"),
    "latin1": ("image,label\ncaf\xe9.png,a\n".encode("latin-1"), "is not UTF-8 text"),
}
for name, (content, msg) in CSVS.items():
    case(f"train-csv-{name}", 2, msg)(
        lambda ctx, c=content: ["train", make.csv(ctx.tmp / "t.csv", c), "-o", ctx.tmp / "run", *TRAIN]
    )
case("ingest-csv-binary", 2, "is not a text CSV file (it holds binary data)")(
    lambda ctx: ["ingest", make.csv(ctx.tmp / "t.csv", CSVS["binary"][0]), "-o", ctx.tmp / "m.csv"]
)
case("train-csv-some-files-missing", 0, "file not found", where="run/train.json")(
    lambda ctx: ["train", _labels_csv(ctx, ["nope.png,a"]), "-o", ctx.tmp / "run", *TRAIN]
)
case("train-csv-path-traversal", 0, "skipped 1 of 9 files")(
    lambda ctx: ["train", _labels_csv(ctx, ["../../../../../../etc/passwd,a"]), "-o", ctx.tmp / "run", *TRAIN]
)
case("audit-csv-path-traversal", 0, "skipped 1 of 9 files: 1 not images")(
    lambda ctx: [
        "audit",
        _labels_csv(ctx, ["../../../../../../etc/passwd,a"]),
        "-o",
        ctx.tmp / "a",
        "--quiet",
    ]
)

# ---------------------------------------------------------------------------------------------------------
# npz arrays
# ---------------------------------------------------------------------------------------------------------

case("train-npz-pickled-objects", 2, "holds Python objects, which medlens never unpickles")(
    lambda ctx: ["train", make.pickled_npz(ctx.tmp / "p.npz"), "-o", ctx.tmp / "run", *TRAIN]
)
case("train-npz-not-a-zip", 2, "File is not a zip file; is it a NumPy .npz file?")(
    lambda ctx: [
        "train",
        make.csv(ctx.tmp / "z.npz", b"PK\x03\x04 but not really"),
        "-o",
        ctx.tmp / "run",
        *TRAIN,
    ]
)
case("train-npz-label-count-mismatch", 2, "train_labels has shape (5,) but there are 12 images")(
    lambda ctx: ["train", make.mnist_npz(ctx.tmp / "m.npz", labels=5), "-o", ctx.tmp / "run", *TRAIN]
)
case("train-npz-zero-byte", 2, "z.npz: File is not a zip file; is it a NumPy .npz file?")(
    lambda ctx: ["train", make.csv(ctx.tmp / "z.npz", b""), "-o", ctx.tmp / "run", *TRAIN]
)

# ---------------------------------------------------------------------------------------------------------
# NIfTI volumes
# ---------------------------------------------------------------------------------------------------------


def _cut_gz(path: Path) -> Path:
    make.nifti(path, np.random.default_rng(1).normal(40, 5, (16, 16, 16)).astype(np.float32))
    return make.cut(path, 0.5)


case("train3d-nifti-truncated-gz", 0, "truncated file", where="run/train.json")(
    lambda ctx: ["train", _spheres_with(ctx, _cut_gz, "cut.nii.gz"), "-o", ctx.tmp / "run", *UNET3D]
)
case("audit-nifti-truncated-gz", 0, "truncated file")(
    lambda ctx: ["audit", _spheres_with(ctx, _cut_gz, "cut.nii.gz"), "-o", ctx.tmp / "a", "--quiet"]
)
case("audit-nifti-2d-image", 0, "expected a 3D volume or a 4D volume with channels last, got shape (16, 16)")(
    lambda ctx: [
        "audit",
        _spheres_with(ctx, lambda p: make.nifti(p, np.zeros((16, 16), np.float32)), "flat.nii.gz"),
        "-o",
        ctx.tmp / "a",
        "--quiet",
    ]
)
case("predict3d-nifti-2d-image", 2, "expected a 3D volume")(
    lambda ctx: [
        "predict",
        ctx.run3d,
        make.nifti(ctx.tmp / "flat.nii.gz", np.zeros((16, 16), np.float32)),
        "-o",
        ctx.tmp / "pred",
    ]
)
case("predict3d-nifti-zero-byte", 2, "zero-byte file")(
    lambda ctx: ["predict", ctx.run3d, make.csv(ctx.tmp / "z.nii.gz", b""), "-o", ctx.tmp / "pred"]
)
case("predict3d-png-to-3d-model", 2, "a 3D model needs a NIfTI volume")(
    lambda ctx: ["predict", ctx.run3d, make.gray_png(ctx.tmp / "x.png"), "-o", ctx.tmp / "pred"]
)
case("audit-nifti-label-missing", 2, "case x: no label file for x.nii.gz in")(
    lambda ctx: [
        "audit",
        _spheres_with(ctx, _nan_volume, "x.nii.gz", label=lambda p: None),
        "-o",
        ctx.tmp / "a",
        "--quiet",
    ]
)


# ---------------------------------------------------------------------------------------------------------
# Later probes: each area's cases live in badinput/cases_<area>.py and register through `case` above.
# ---------------------------------------------------------------------------------------------------------
def _load_area_modules() -> None:
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            importlib.import_module(f"badinput.{info.name}")


_load_area_modules()
