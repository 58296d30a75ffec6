"""3D training data: a broken or odd volume is skipped wherever it stands, the odd one is the one named, and
``--patch-size`` is checked against the network and the volumes before any training."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from seg_phantoms import make_spheres

from medlens.data.ingest import ingest
from medlens.errors import MedlensError
from medlens.tasks.localise import prepare_volumes, split_manifest
from medlens.training.config import TrainConfig

UNET = {"model": "unet", "model_args": {"channels": [4, 8], "num_res_units": 0}, "task": "segmentation"}


def _spheres(tmp_path, n=6):
    return make_spheres(tmp_path / "vols", n_cases=n, shape=(16, 16, 16))


def _replace(path, shape):
    """Any shape, channels last as NIfTI stores them (nibabel directly: medlens would refuse to write it)."""
    os.remove(path)
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).normal(40, 5, shape).astype(np.float32), np.eye(4)), path
    )


def _prepare(root, **cfg):
    config = TrainConfig(**{**UNET, "patch_size": [16, 16, 16], "val_fraction": 0.34, **cfg})
    return prepare_volumes(split_manifest(ingest(root), config, False)[0], config, progress=False)


def _skipped(data) -> dict[str, dict]:
    return {os.path.basename(s["path"]): s for s in data.skipped}


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated file"),
        (lambda p: p.write_bytes(b""), "zero-byte file"),
        (lambda p: _replace(p, (16, 16, 16, 2, 2)), "expected a 3D volume or a 4D volume"),
        (lambda p: _replace(p, (16, 16)), "got shape (16, 16)"),
    ],
    ids=["truncated", "zero-byte", "5d", "2d"],
)
@pytest.mark.parametrize("which", ["case0", "case3"])
def test_a_broken_volume_is_skipped_wherever_it_stands(tmp_path, damage, reason, which):
    root = _spheres(tmp_path)
    damage(root / "imagesTr" / f"{which}.nii.gz")
    data, spec = _prepare(root)
    skipped = _skipped(data)
    assert list(skipped) == [f"{which}.nii.gz"] and reason in skipped[f"{which}.nii.gz"]["reason"]
    assert len(data.images) == 5 and spec.channels == 1
    assert which not in set(data.manifest.df["case_id"])


@pytest.mark.parametrize("which", ["case0", "case4"])
def test_the_odd_channel_count_is_the_one_named(tmp_path, which):
    root = _spheres(tmp_path)
    _replace(root / "imagesTr" / f"{which}.nii.gz", (16, 16, 16, 2))
    data, spec = _prepare(root)
    (record,) = data.skipped
    assert os.path.basename(record["path"]) == f"{which}.nii.gz" and record["kind"] == "bad-shape"
    assert record["reason"].startswith(f"case {which}: 2 channel(s) (a 4D volume) where 5 other volume(s)")
    assert spec.channels == 1 and len(data.images) == 5


def test_multichannel_volumes_set_the_channels(tmp_path):
    root = _spheres(tmp_path, n=4)
    for i in range(3):
        _replace(root / "imagesTr" / f"case{i}.nii.gz", (16, 16, 16, 2))
    data, spec = _prepare(root)
    assert spec.channels == 2 and spec.mean == (0.0, 0.0) and len(data.images) == 3
    assert [os.path.basename(s["path"]) for s in data.skipped] == ["case3.nii.gz"]


def test_an_even_split_of_channel_counts_is_refused(tmp_path):
    root = _spheres(tmp_path, n=4)
    for i in (0, 1):
        _replace(root / "imagesTr" / f"case{i}.nii.gz", (16, 16, 16, 3))
    expected = r"disagree on their channels: 2 have 3 \(first: case case0\), 2 have 1 \(first: case case2\)"
    with pytest.raises(MedlensError, match=expected):
        _prepare(root)


def test_patch_larger_than_the_volumes_is_refused_before_training(tmp_path):
    root = _spheres(tmp_path, n=4)
    with pytest.raises(MedlensError) as err:
        _prepare(root, patch_size=[64, 16, 16])
    assert str(err.value) == (
        "--patch-size 64,16,16 is larger than the largest volume (16 × 16 × 16 voxels); give sides up to "
        "16,16,16, or leave --patch-size out to fit the data"
    )


def test_patch_check_rounds_the_volume_up_to_the_network_multiple():
    from medlens.tasks.localise import check_patch_fits

    check_patch_fits((24, 16, 16), [(20, 16, 16), (18, 12, 16)], 8, resampled=False)  # 20 → 24
    with pytest.raises(MedlensError, match="after resampling to --spacing\\); give sides up to 24,16,16"):
        check_patch_fits((32, 16, 16), [(20, 16, 16)], 8, resampled=True)


def test_patch_not_fitting_the_network_is_refused_before_any_volume_is_read(tmp_path, monkeypatch):
    root = _spheres(tmp_path, n=2)
    monkeypatch.setattr("medlens.tasks.localise.load_volumes", lambda *a, **k: pytest.fail("volumes read"))
    with pytest.raises(MedlensError, match="--patch-size 15,16,16: every side must be a multiple of 2"):
        _prepare(root, patch_size=[15, 16, 16])


@pytest.mark.parametrize("patch", [[4096, 4096, 4096], [16, 16, 2048], [4, 16, 16]])
def test_patch_sides_have_a_sane_range(patch):
    with pytest.raises(MedlensError, match="--patch-size needs 3 sides of 8 to 1024 voxels"):
        TrainConfig(**UNET, patch_size=patch).validate()


def test_a_volume_the_model_cannot_take_is_skipped_not_fatal(tmp_path):
    """evaluate --data: the run's spec fixes the channels; an odd case is reported and skipped."""
    from medlens.data.spec import PreprocessingSpec
    from medlens.tasks.volumes import load_volumes

    root = _spheres(tmp_path, n=3)
    _replace(root / "imagesTr" / "case1.nii.gz", (16, 16, 16, 2))
    spec = PreprocessingSpec(
        class_names=("background", "foreground"), task="segmentation", spatial_dims=3, intensity="volume"
    )
    images, _, _, kept, skipped = load_volumes(ingest(root), spec, progress=False)
    assert len(images) == 2 and list(kept.df["case_id"]) == ["case0", "case2"]
    (record,) = skipped
    assert record["kind"] == "bad-shape" and record["path"].endswith("case1.nii.gz")
    assert (
        record["reason"]
        == "case case1: 2 channel(s) but the model takes 1; every volume needs the same channels"
    )
