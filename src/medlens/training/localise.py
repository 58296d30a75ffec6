"""Data preparation of the localisation tasks (segmentation 2D/3D, detection), beside classification's.

Each returns what :func:`medlens.training.fit.train` needs: the prepared data (cached tensors and per-split
loaders), the preprocessing spec saved in the checkpoint, and the audit changes. Validation is carved by
patient (all slices of a patient on one side), with the same seeded splitter as classification.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.manifest import Manifest
from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.tasks.detection import with_boxes
from medlens.training.config import TrainConfig

BINARY = ("background", "foreground")


def split_manifest(source, cfg: TrainConfig, progress: bool, fix=None) -> tuple[Manifest, list[dict]]:
    """Ingest, check the task's targets, carve a patient-grouped validation split, audit-fix, subset."""
    from medlens.data.prepared import resolve_source
    from medlens.data.splits import carve_validation, stratified_subset

    manifest = resolve_source(source, cfg.task)
    where = manifest.source or manifest.root
    if len(manifest) == 0:
        raise MedlensError(f"{where}: no cases found")
    if cfg.task == "segmentation" and "mask" not in manifest.df.columns:
        raise MedlensError(
            f"{where} has no masks; segmentation needs image/mask pairs (kaggle_3m folders, a CSV "
            "with image,mask columns, NIfTI imagesTr/labelsTr folders or an MSD dataset.json)"
        )
    manifest = carve_validation(manifest, cfg.val_fraction, seed=cfg.seed)
    changes: list[dict] = []
    if cfg.audit_fix and fix is not None:  # the audit's fixer, passed in by the pipeline
        manifest, changes = fix(manifest, progress)
    if cfg.fraction < 1:
        manifest = stratified_subset(manifest, cfg.fraction, seed=cfg.seed)
    return manifest, changes


def is_volume_source(manifest: Manifest) -> bool:
    """True when the first image is a NIfTI volume."""
    from medlens.io.volumes import is_nifti_file

    return bool(len(manifest)) and is_nifti_file(manifest.resolve(manifest.df["image"].iloc[0]))


def image_channels(manifest: Manifest) -> int:
    """3 when the first readable image has colour channels, else 1 (LGG slices are 3-channel MRI)."""
    from medlens.io import read_image

    for path in manifest.paths()[:20]:
        try:
            image = read_image(path)
        except MedlensError:
            continue
        return 3 if image.ndim == 3 and image.shape[-1] >= 3 else 1
    return 1


def _intensity(cfg: TrainConfig, dims: int) -> str:
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


def _size(cfg: TrainConfig, info) -> int:
    from medlens.models.segmentation import SPECIFIC, size_multiple

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


def prepare_segmentation(source, cfg: TrainConfig, info, progress: bool, fix=None):
    """2D slices (cached at ``image_size``) or 3D volumes (preprocessed, trained on patches)."""
    from medlens.data.cache import cache_pairs
    from medlens.data.prepared import PreparedData, channel_stats

    manifest, changes = split_manifest(source, cfg, progress, fix)
    dims = cfg.spatial_dims or (3 if is_volume_source(manifest) else 2)
    if dims == 3:
        return prepare_volumes(manifest, cfg, progress), changes
    size = _size(cfg, info)
    channels = cfg.channels or image_channels(manifest)
    cached = cache_pairs(manifest, size, channels, workers=cfg.workers, progress=progress)
    kept = manifest.with_df(manifest.df.iloc[cached.kept])
    _check_nonempty(kept, cached.skipped, manifest)
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
    _check_splits(data)
    mean, std = channel_stats(data.images[data.indices("train")])
    spec = PreprocessingSpec(
        image_size=size,
        channels=channels,
        mean=tuple(mean),
        std=tuple(std),
        class_names=BINARY,
        task="segmentation",
        intensity=_intensity(cfg, 2),
    )
    return (data, spec), changes


def prepare_volumes(manifest: Manifest, cfg: TrainConfig, progress: bool):
    """3D: read and preprocess every volume once; patches are drawn per epoch."""
    from medlens.io.volumes import read_volume
    from medlens.models.segmentation import SPECIFIC, size_multiple
    from medlens.tasks.volumes import VolumeData, default_patch_size, load_volumes

    if cfg.model not in SPECIFIC:
        raise MedlensError(
            f"model {cfg.model} is not a 3D segmentation network; use one of {', '.join(SPECIFIC)}"
        )
    channels = read_volume(manifest.resolve(manifest.df["image"].iloc[0]))[0].shape[0]
    spec = PreprocessingSpec(
        image_size=128,
        channels=channels,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        class_names=BINARY,
        task="segmentation",
        spatial_dims=3,
        intensity=_intensity(cfg, 3),
        spacing=tuple(cfg.spacing) if cfg.spacing else None,
    )
    images, labels, spacings, kept, skipped = load_volumes(manifest, spec, progress=progress)
    _check_nonempty(kept, skipped, manifest)
    multiple = size_multiple(cfg.model, **(cfg.model_args or {}))
    if cfg.patch_size:
        patch = tuple(int(p) for p in cfg.patch_size)
        if any(p % multiple for p in patch):
            raise MedlensError(
                f"--patch-size {','.join(map(str, patch))}: every side must be a multiple of "
                f"{multiple} for model {cfg.model}"
            )
    else:
        patch = default_patch_size([tuple(x.shape[1:]) for x in images], multiple)
    spec = dataclasses.replace(spec, patch_size=patch, image_size=max(8, min(2048, max(patch))))
    data = VolumeData(kept, images, labels, spacings, list(BINARY), patch, cfg.samples_per_volume, skipped)
    _check_splits(data)
    return data, spec


def prepare_detection(source, cfg: TrainConfig, info, progress: bool, fix=None):
    """Boxes from box columns (x0, y0, x1, y1) or, with ``boxes_from_masks``, from each mask's largest
    component; cases without a box are left out (a single-box detector needs an object)."""
    from medlens.data.cache import cache_pairs
    from medlens.data.prepared import PreparedData, channel_stats
    from medlens.tasks.detection import BOX_COLUMNS, box_masks

    manifest, changes = split_manifest(source, cfg, progress, fix)
    manifest, dropped = with_boxes(manifest, from_masks=cfg.boxes_from_masks)
    size = cfg.image_size or info.default_size
    channels = cfg.channels or image_channels(manifest)
    cached = cache_pairs(manifest, size, channels, masks=False, workers=cfg.workers, progress=progress)
    kept = manifest.with_df(manifest.df.iloc[cached.kept])
    boxes = kept.df[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    inside, skipped = boxes_inside(kept, boxes, cached.shapes)
    skipped = cached.skipped + skipped
    kept = kept.with_df(kept.df.iloc[inside])
    _check_nonempty(kept, skipped, manifest)
    data = PreparedData(
        kept,
        cached.images[inside],
        box_masks(boxes[inside], cached.shapes[inside], size),
        [],
        skipped,
        shapes=cached.shapes[inside],
        info={"cases_without_box": dropped},
    )
    _check_splits(data)
    mean, std = channel_stats(data.images[data.indices("train")])
    spec = PreprocessingSpec(
        image_size=size,
        channels=channels,
        mean=tuple(mean),
        std=tuple(std),
        task="detection",
        intensity=_intensity(cfg, 2),
    )
    return (data, spec), changes


def boxes_inside(manifest: Manifest, boxes: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Positions of the cases whose box lies inside its image, and a skipped record for each other one.

    A box reaching past the image (by more than a pixel of rounding) was drawn on another image or another
    size; training on it would teach the model a box it cannot see.
    """
    heights, widths = shapes[:, 0].astype(np.float64), shapes[:, 1].astype(np.float64)
    ok = (boxes[:, 2] <= widths + 1) & (boxes[:, 3] <= heights + 1)
    skipped = [
        {
            "path": manifest.paths()[i],
            "case_id": str(manifest.df["case_id"].iloc[i]),
            "kind": "bad-box",
            "reason": f"box [{', '.join(f'{v:g}' for v in boxes[i])}] lies outside the "
            f"{int(widths[i])} x {int(heights[i])} image",
        }
        for i in np.flatnonzero(~ok)
    ]
    return np.flatnonzero(ok), skipped


def _mask_info(manifest: Manifest, masks: np.ndarray) -> dict[str, Any]:
    split = manifest.df["split"].to_numpy()
    positive = masks.reshape(len(masks), -1).any(1)
    return {
        "n_patients": {
            s: int(manifest.df.loc[split == s, "patient_id"].nunique()) for s in ("train", "val", "test")
        },
        "slices_with_foreground": {s: int(positive[split == s].sum()) for s in ("train", "val", "test")},
    }


def _check_nonempty(kept: Manifest, skipped: list[dict], manifest: Manifest) -> None:
    if len(kept) == 0:
        first = skipped[0] if skipped else {"path": "?", "reason": "?"}
        raise MedlensError(
            f"none of the {len(manifest)} images in {manifest.source or manifest.root} could be "
            f"read (first: {first['path']}: {first['reason']})"
        )


def _check_splits(data) -> None:
    n_train, n_val = len(data.indices("train")), len(data.indices("val"))
    if n_train == 0 or n_val == 0:
        raise MedlensError(
            f"training needs readable cases in both the train and val splits; got {n_train} train "
            f"and {n_val} val"
        )
