"""Checks shared by the segmentation sources: :func:`check_pair` (a mask fits its image and holds only
allowed labels), :func:`validate_pairs` over a manifest, and the helpers every loader ends with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.manifest import REQUIRED, Manifest
from medlens.errors import MedlensError
from medlens.io import read_image
from medlens.io.volumes import is_nifti_file, read_volume

RESERVED = set(REQUIRED) | {"mask", "label", "slice_index"}


def check_pair(
    image: np.ndarray, mask: np.ndarray, case_id: str, *, spatial_dims: int = 2, num_classes: int = 2
) -> np.ndarray:
    """Check that ``mask`` fits ``image`` and holds only allowed values; return it as labels.

    Args:
        image: 2D image (H, W) or (H, W, C) as :func:`medlens.io.read_image` returns it, or for
            ``spatial_dims=3`` a channel-first volume (C, X, Y, Z) as :func:`medlens.io.volumes.read_volume`
            returns it.
        mask: the mask, same layout (a 2D mask may have identical colour channels).
        case_id: named in error messages.
        spatial_dims: 2 for slices, 3 for volumes.
        num_classes: 2 for a binary mask ({0, 1} or {0, 255}); more for label maps with values
            0..num_classes-1.

    Returns:
        The mask as uint8 labels without channels ((H, W) or (X, Y, Z)); 255 becomes 1 for binary masks.

    Raises:
        MedlensError: the shapes differ or the mask holds unexpected values, naming the case.
    """
    mask = _mask_plane(np.asarray(mask), case_id, spatial_dims)
    image = np.asarray(image)
    spatial = image.shape[:2] if spatial_dims == 2 else image.shape[-3:]
    if tuple(spatial) != mask.shape:
        raise MedlensError(
            f"case {case_id}: mask shape {mask.shape} does not match image shape "
            f"{tuple(spatial)}; image and mask must have the same size"
        )
    values = np.unique(mask)
    if num_classes == 2:
        if set(values.tolist()) <= {0, 1}:
            return mask.astype(np.uint8)
        if set(values.tolist()) <= {0, 255}:
            return (mask == 255).astype(np.uint8)
        raise MedlensError(
            f"case {case_id}: mask values {_show(values)} are not binary ({{0, 1}} or "
            "{0, 255}); lossy formats such as JPEG blur masks: "
            "save them as PNG, TIFF or NIfTI"
        )
    if values.min() < 0 or values.max() >= num_classes or not np.all(np.mod(values, 1) == 0):
        raise MedlensError(
            f"case {case_id}: mask values {_show(values)} are outside the labels "
            f"0..{num_classes - 1}; check num_classes or the mask file"
        )
    return mask.astype(np.uint8)


def _mask_plane(mask: np.ndarray, case_id: str, spatial_dims: int) -> np.ndarray:
    if spatial_dims == 3 and mask.ndim == 4:
        if mask.shape[0] != 1:
            raise MedlensError(f"case {case_id}: a mask volume needs one channel, got shape {mask.shape}")
        return mask[0]
    if spatial_dims == 2 and mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, mask.shape[-1])):
            raise MedlensError(
                f"case {case_id}: the mask has {mask.shape[-1]} different colour channels; "
                "save it as a single-channel (greyscale) image"
            )
        return mask[..., 0]
    if mask.ndim != spatial_dims:
        raise MedlensError(f"case {case_id}: expected a {spatial_dims}D mask, got shape {mask.shape}")
    return mask


def _show(values: np.ndarray) -> str:
    shown = [round(float(v), 3) if np.issubdtype(values.dtype, np.floating) else int(v) for v in values[:8]]
    return f"{shown}{' ...' if values.size > 8 else ''}"


def validate_pairs(manifest: Manifest, *, num_classes: int = 2) -> None:
    """Read every image/mask pair of ``manifest`` and :func:`check_pair` it (slow: reads everything)."""

    for row in manifest.df.itertuples(index=False):
        image_path, mask_path = manifest.resolve(row.image), manifest.resolve(row.mask)
        if is_nifti_file(image_path):
            check_pair(
                read_volume(image_path)[0],
                read_volume(mask_path)[0],
                row.case_id,
                spatial_dims=3,
                num_classes=num_classes,
            )
        else:
            check_pair(read_image(image_path), read_image(mask_path), row.case_id, num_classes=num_classes)


def _finish(df: pd.DataFrame, root: Path, kind: str, where: Path, opts: dict[str, Any]) -> Manifest:
    unknown = sorted(set(opts) - {"validate", "num_classes"})
    if unknown:
        raise MedlensError(
            f"unknown option {unknown[0]!r} for a segmentation source: use validate, num_classes"
        )
    if df.empty:
        raise MedlensError(f"no image/mask pairs found in {where}")
    patients = df["patient_id"].nunique() if "patient_id" in df.columns else len(df)
    counts = f"{patients} patients, {len(df)} slices" if "slice_index" in df.columns else f"{len(df)} cases"
    manifest = Manifest(df, root, source=f"{kind}: {where} ({counts})")
    if opts.get("validate"):
        validate_pairs(manifest, num_classes=int(opts.get("num_classes", 2)))
    return manifest


def _stem(path: str) -> str:
    name = Path(str(path)).name
    if ".nii" in name.lower():
        return re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)
    return Path(name).stem
