"""Hostile-input cases of the second probe: training (see docs/robustness.md, "Second probe: training")."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from badinput import make
from badinput.cases import TRAIN, UNET3D, Ctx, _interrupted, case, one_line_error, sources_kept


class Pickled:
    """A custom class: a checkpoint holding one can only be read by unpickling code."""

    def __init__(self) -> None:
        self.weights = [0.0] * 4


def _damaged(ctx: Ctx, how: str) -> list:
    """``train --resume`` of an interrupted run whose last checkpoint is damaged in the way ``how`` names."""
    import torch

    run = _interrupted(ctx)
    ckpt = ctx.tmp / "run.partial" / "checkpoints" / "last.ckpt"
    if how == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(4096)}, "epoch": 0}, ckpt)
        make.cut(ckpt, 0.5)
    elif how == "random":
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "pickled":
        torch.save({"state_dict": {}, "callbacks": Pickled()}, ckpt)
    else:
        ckpt.write_bytes(b"")
    return ["train", ctx.data(), "-o", run, *TRAIN, "--resume"]


def _names_checkpoint_and_cure(ctx: Ctx, out: str) -> None:
    one_line_error(ctx, out)
    assert "weights_only" not in out and "Aborted" not in out, out
    assert "without --resume" in out and "last.ckpt" in out, out
    sources_kept("run.partial/checkpoints/last.ckpt")(ctx, out)


for _how in ("truncated", "random", "pickled", "zero-byte"):
    case(f"trn-resume-checkpoint-{_how}", 2, "cannot resume", check=_names_checkpoint_and_cure)(
        lambda ctx, h=_how: _damaged(ctx, h)
    )


def _unet3d(*replace: str) -> list:
    """UNET3D with the value after each ``--option`` in ``replace`` (pairs) swapped in."""
    args = list(UNET3D)
    for option, value in zip(replace[::2], replace[1::2], strict=True):
        args[args.index(option) + 1] = value
    return args


case(
    "trn-patch-size-4096",
    2,
    "--patch-size needs 3 sides of 8 to 1024 voxels (X,Y,Z), got 4096,4096,4096",
    check=one_line_error,
)(lambda ctx: ["train", ctx.spheres(), "-o", ctx.tmp / "run", *_unet3d("--patch-size", "4096,4096,4096")])
case(
    "trn-patch-size-beyond-volumes",
    2,
    "--patch-size 64,64,64 is larger than the largest volume (16 × 16 × 16 voxels); give sides up to 16",
    check=one_line_error,
)(lambda ctx: ["train", ctx.spheres(), "-o", ctx.tmp / "run", *_unet3d("--patch-size", "64,64,64")])
case(
    "trn-patch-size-not-divisible",
    2,
    "--patch-size 15,16,16: every side must be a multiple of 2 for model unet",
    check=one_line_error,
)(lambda ctx: ["train", ctx.spheres(), "-o", ctx.tmp / "run", *_unet3d("--patch-size", "15,16,16")])


def _search(ctx: Ctx, grid: str) -> list:
    return ["search", ctx.data(), "-o", ctx.tmp / "s", "--grid", grid, "--set", "epochs=1", "--quiet"]


case(
    "trn-search-grid-unknown-model",
    2,
    "--grid model=nosuchnet: unknown model",
    check=lambda ctx, out: (one_line_error(ctx, out), _nothing_at(ctx, "s")),
)(lambda ctx: _search(ctx, "model=nosuchnet"))
case("trn-search-grid-model-did-you-mean", 2, "Did you mean 'cnn-small'?", check=one_line_error)(
    lambda ctx: _search(ctx, "model=logreg,cnn-smal")
)
case("trn-search-grid-segmentation-model", 2, "cannot be trained for classification", check=one_line_error)(
    lambda ctx: _search(ctx, "model=unet")
)
case("trn-search-set-unknown-model", 2, "--set model=nosuchnet: unknown model", check=one_line_error)(
    lambda ctx: ["search", ctx.data(), "-o", ctx.tmp / "s", "--grid", "lr=1e-3", "--set", "model=nosuchnet"]
)
case("trn-search-grid-unknown-option", 2, "unknown training option 'lrr'", check=one_line_error)(
    lambda ctx: _search(ctx, "lrr=1e-3")
)
case("trn-search-grid-wrong-type", 2, "epochs='two': not a number", check=one_line_error)(
    lambda ctx: _search(ctx, "epochs=two")
)


def _nothing_at(ctx: Ctx, name: str) -> None:
    assert not (ctx.tmp / name).exists(), f"{name} was written"


def _first_volume(ctx: Ctx, builder) -> Path:
    """The sphere phantoms (6 cases) with imagesTr's first file (case0) replaced by ``builder(path)``."""
    from seg_phantoms import make_spheres

    root = make_spheres(ctx.tmp / "vols", n_cases=6, shape=(16, 16, 16))
    builder(root / "imagesTr" / "case0.nii.gz")
    return root


def _cut_volume(path: Path) -> Path:
    return make.cut(path, 0.5)


def _dims(*shape: int):
    def build(path: Path) -> Path:
        os.remove(path)
        return make.nifti(path, np.random.default_rng(0).normal(40, 5, shape).astype(np.float32))

    return build


case("trn-3d-first-volume-truncated", 0, "case0.nii.gz", where="run/train.json")(
    lambda ctx: ["train", _first_volume(ctx, _cut_volume), "-o", ctx.tmp / "run", *UNET3D]
)
case("trn-3d-first-volume-zero-byte", 0, "case0.nii.gz", where="run/train.json")(
    lambda ctx: ["train", _first_volume(ctx, lambda p: make.csv(p, b"")), "-o", ctx.tmp / "run", *UNET3D]
)
case("trn-3d-first-volume-4d", 0, "case0.nii.gz", where="run/train.json")(
    lambda ctx: ["train", _first_volume(ctx, _dims(16, 16, 16, 2)), "-o", ctx.tmp / "run", *UNET3D]
)
case("trn-3d-first-volume-5d", 0, "case0.nii.gz", where="run/train.json")(
    lambda ctx: ["train", _first_volume(ctx, _dims(16, 16, 16, 2, 2)), "-o", ctx.tmp / "run", *UNET3D]
)


def _one_per_class(ctx: Ctx) -> Path:
    data = ctx.data(n=1)
    shutil.rmtree(ctx.tmp / "vols", ignore_errors=True)
    return data


case(
    "trn-one-image-per-class",
    2,
    "each class has a single training image (cyst, normal); each class needs at least 2 images",
    check=one_line_error,
)(lambda ctx: ["train", _one_per_class(ctx), "-o", ctx.tmp / "run", *TRAIN])
case(
    "trn-evaluate3d-4d-volume-in-data",
    0,
    "case case0: 2 channel(s) but the model takes 1; every volume needs the same channels",
    where="ev/summary.json",
)(
    lambda ctx: [
        "evaluate",
        ctx.run3d,
        "--data",
        _first_volume(ctx, _dims(16, 16, 16, 2)),
        "-o",
        ctx.tmp / "ev",
        "--quiet",
    ]
)
