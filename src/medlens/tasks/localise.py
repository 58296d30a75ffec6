"""Training-data preparation shared by the localisation tasks (segmentation 2D/3D, detection).

The tasks' ``prepare`` hooks (:mod:`medlens.tasks.segmentation`, :mod:`medlens.tasks.detection`) return what
:func:`medlens.training.fit.train` needs: the prepared data (cached tensors and per-split loaders), the
preprocessing spec saved in the checkpoint, and the audit changes. Validation is carved by patient (all
slices of a patient on one side), with the same seeded splitter as classification. ``cfg`` is a
:class:`medlens.training.config.TrainConfig` (a layer above; read by attribute only).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.cache import cache_pairs
from medlens.data.manifest import Manifest
from medlens.data.prepared import PreparedData, channel_stats
from medlens.data.spec import PreprocessingSpec
from medlens.data.splits import carve_validation, stratified_subset
from medlens.errors import MedlensError
from medlens.io import read_image
from medlens.io.volumes import is_nifti_file
from medlens.models.segmentation import SPECIFIC, size_multiple
from medlens.tasks.volumes import VolumeData, default_patch_size, load_volumes

BINARY = ("background", "foreground")


def split_manifest(
    manifest: Manifest, cfg, progress: bool, fix=None, check=None
) -> tuple[Manifest, list[dict]]:
    """Check the task's targets (``check(manifest)``), carve a patient-grouped validation split, audit-fix,
    subset."""
    where = manifest.source or manifest.root
    if len(manifest) == 0:
        raise MedlensError(f"{where}: no cases found")
    if check is not None:
        check(manifest)
    manifest = carve_validation(manifest, cfg.val_fraction, seed=cfg.seed)
    changes: list[dict] = []
    if cfg.audit_fix and fix is not None:  # the audit's fixer, passed in by the pipeline
        manifest, changes = fix(manifest, progress)
    if cfg.fraction < 1:
        manifest = stratified_subset(manifest, cfg.fraction, seed=cfg.seed)
    return manifest, changes


def is_volume_source(manifest: Manifest) -> bool:
    """True when the first image is a NIfTI volume."""
    return bool(len(manifest)) and is_nifti_file(manifest.resolve(manifest.df["image"].iloc[0]))


def image_channels(manifest: Manifest) -> int:
    """3 when the first readable image has colour channels, else 1 (LGG slices are 3-channel MRI)."""
    for path in manifest.paths()[:20]:
        try:
            image = read_image(path)
        except MedlensError:
            continue
        return 3 if image.ndim == 3 and image.shape[-1] >= 3 else 1
    return 1


def intensity(cfg, dims: int) -> str:
    """Per-image standardisation by default for 2D MRI slices (scanners differ in scale); per volume for
    3D."""
    if dims == 3:
        if cfg.intensity not in (None, "volume"):
            raise MedlensError(
                f"--intensity {cfg.intensity} does not apply to 3D volumes; they are standardised "
                "per volume (--intensity volume)"
            )
        return "volume"
    if cfg.intensity == "volume":
        raise MedlensError("--intensity volume applies to 3D volumes; for 2D images use image or dataset")
    return cfg.intensity or "image"


def _size(cfg, info) -> int:
    size = cfg.image_size or info.default_size
    if cfg.model in SPECIFIC:
        multiple = size_multiple(cfg.model, **(cfg.model_args or {}))
        if size % multiple:
            raise MedlensError(
                f"--image-size {size} is not a multiple of {multiple}, which model {cfg.model} "
                f"needs (it halves the image {multiple.bit_length() - 1} times); "
                f"use {max(multiple, size // multiple * multiple)}"
            )
    return size


def prepare_segmentation(manifest: Manifest, cfg, info, progress: bool, fix=None):
    """2D slices (cached at ``image_size``) or 3D volumes (preprocessed, trained on patches)."""
    manifest, changes = split_manifest(manifest, cfg, progress, fix, check=check_masks)
    dims = cfg.spatial_dims or (3 if is_volume_source(manifest) else 2)
    if dims == 3:
        return prepare_volumes(manifest, cfg, progress), changes
    size = _size(cfg, info)
    channels = cfg.channels or image_channels(manifest)
    cached = cache_pairs(manifest, size, channels, workers=cfg.workers, progress=progress)
    kept = manifest.with_df(manifest.df.iloc[cached.kept])
    check_nonempty(kept, cached.skipped, manifest)
    groups = pd.factorize(kept.df["patient_id"])[0].astype(np.int64)
    data = PreparedData(
        kept,
        cached.images,
        cached.masks,
        list(BINARY),
        cached.skipped,
        extra=(groups,),
        shapes=cached.shapes,
        info=_mask_info(kept, cached.masks),
    )
    check_splits(data)
    mean, std = channel_stats(data.images[data.indices("train")])
    spec = PreprocessingSpec(
        image_size=size,
        channels=channels,
        mean=tuple(mean),
        std=tuple(std),
        class_names=BINARY,
        task="segmentation",
        intensity=intensity(cfg, 2),
    )
    return (data, spec), changes


def prepare_volumes(manifest: Manifest, cfg, progress: bool):
    """3D: read and preprocess every volume once; patches are drawn per epoch.

    The channel count is the one most volumes have (a broken or odd volume is skipped, wherever it stands),
    and ``--patch-size`` is checked against the network's downsampling before any volume is read and against
    the volumes' sizes once they are.
    """
    if cfg.model not in SPECIFIC:
        raise MedlensError(
            f"model {cfg.model} is not a 3D segmentation network; use one of {', '.join(SPECIFIC)}"
        )
    multiple = size_multiple(cfg.model, **(cfg.model_args or {}))
    if cfg.patch_size and any(int(p) % multiple for p in cfg.patch_size):
        raise MedlensError(
            f"--patch-size {_sides(cfg.patch_size)}: every side must be a multiple of {multiple} for model "
            f"{cfg.model}"
        )
    spec = PreprocessingSpec(  # channels: set below from the volumes read
        image_size=128,
        class_names=BINARY,
        task="segmentation",
        spatial_dims=3,
        intensity=intensity(cfg, 3),
        spacing=tuple(cfg.spacing) if cfg.spacing else None,
    )
    images, labels, spacings, kept, skipped = load_volumes(
        manifest, spec, progress=progress, agree_channels=True
    )
    check_nonempty(kept, skipped, manifest)
    shapes = [tuple(x.shape[1:]) for x in images]
    patch = default_patch_size(shapes, multiple)
    if cfg.patch_size:
        patch = tuple(int(p) for p in cfg.patch_size)
        check_patch_fits(patch, shapes, multiple, resampled=cfg.spacing is not None)
    channels = int(images[0].shape[0])
    spec = dataclasses.replace(
        spec,
        channels=channels,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        patch_size=patch,
        image_size=max(8, min(2048, max(patch))),
    )
    data = VolumeData(kept, images, labels, spacings, list(BINARY), patch, cfg.samples_per_volume, skipped)
    check_splits(data)
    return data, spec


def check_patch_fits(
    patch: tuple[int, ...], shapes: list[tuple[int, ...]], multiple: int, *, resampled: bool
):
    """Refuse a patch larger than the largest volume on some axis (rounded up to ``multiple``): volumes are
    padded up to the patch, so such a patch trains on padding and costs memory for nothing (4096³ voxels are
    256 GiB)."""
    biggest = np.max(np.array(shapes), axis=0)
    most = tuple(int(-(-int(b) // multiple) * multiple) for b in biggest)
    if any(p > m for p, m in zip(patch, most)):
        grid = " after resampling to --spacing" if resampled else ""
        size = " × ".join(map(str, biggest))
        raise MedlensError(
            f"--patch-size {_sides(patch)} is larger than the largest volume ({size} voxels{grid}); "
            f"give sides up to {_sides(most)}, or leave --patch-size out to fit the data"
        )


def _sides(values) -> str:
    return ",".join(str(int(v)) for v in values)


def check_masks(manifest: Manifest) -> None:
    """Segmentation needs a mask per case."""
    if "mask" not in manifest.df.columns:
        raise MedlensError(
            f"{manifest.source or manifest.root} has no masks; segmentation needs image/mask pairs "
            "(kaggle_3m folders, a CSV with image,mask columns, NIfTI imagesTr/labelsTr folders or an MSD "
            "dataset.json)"
        )


def _mask_info(manifest: Manifest, masks: np.ndarray) -> dict[str, Any]:
    split = manifest.df["split"].to_numpy()
    positive = masks.reshape(len(masks), -1).any(1)
    return {
        "n_patients": {
            s: int(manifest.df.loc[split == s, "patient_id"].nunique()) for s in ("train", "val", "test")
        },
        "slices_with_foreground": {s: int(positive[split == s].sum()) for s in ("train", "val", "test")},
    }


def check_nonempty(kept: Manifest, skipped: list[dict], manifest: Manifest) -> None:
    if len(kept) == 0:
        first = skipped[0] if skipped else {"path": "?", "reason": "?"}
        raise MedlensError(
            f"none of the {len(manifest)} images in {manifest.source or manifest.root} could be "
            f"read (first: {first['path']}: {first['reason']})"
        )


def check_splits(data) -> None:
    n_train, n_val = len(data.indices("train")), len(data.indices("val"))
    if n_train == 0 or n_val == 0:
        raise MedlensError(
            f"training needs readable cases in both the train and val splits; got {n_train} train "
            f"and {n_val} val"
        )
