"""NIfTI volumes: read to a channel-first array with its affine and spacing, write atomically.

Layout: every volume medlens reads is channel-first ``(C, X, Y, Z)`` (C = 1 for a plain 3D image), the
layout MONAI transforms expect. On disk NIfTI keeps channels last, as the format prescribes: a 3D image is
``(X, Y, Z)``, a multi-channel image is 4D ``(X, Y, Z, C)``; the NIfTI "vector" layout ``(X, Y, Z, 1, C)``
is read too. The affine maps voxel indices to RAS+ millimetres (nibabel's convention).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.failures import reader_boundary
from medlens.io.guard import check_declared, check_finite, failure_reason
from medlens.utils.files import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_file(path: str | Path) -> bool:
    """True when ``path`` ends in .nii or .nii.gz."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


@reader_boundary
def read_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read a NIfTI file as a channel-first volume.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file holding a 3D image or a 4D image whose last axis is channels.

    Returns:
        ``(array, affine, spacing)``: the array of shape (C, X, Y, Z) in the file's dtype after scaling
        (float32 when the header scales values), the 4x4 voxel-to-RAS affine, and the voxel size in mm.

    Raises:
        UnreadableImageError: missing, truncated, undecodable, too large (declared size, checked before
            reading), holding NaN/inf voxels, or not 3D or 4D (kind ``bad-shape``).
    """
    import nibabel as nib  # deferred: heavy, only NIfTI volumes need it

    path = Path(path)
    if not path.is_file():
        raise UnreadableImageError(str(path), "file not found")
    if path.stat().st_size == 0:
        raise UnreadableImageError(str(path), "zero-byte file")
    try:
        img = nib.load(str(path))  # the header only; no voxel is read yet
    except Exception as err:  # nibabel raises many types for broken files
        raise UnreadableImageError(str(path), f"not a readable NIfTI file ({_reason(err)})") from err
    scaled = _is_scaled(img)
    itemsize = img.get_data_dtype().itemsize
    check_declared(path, img.shape, max(itemsize, 4) if scaled else itemsize, what="volume")
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # a cut-off .nii.gz fails here (EOFError, zlib.error, OSError, ValueError)
        raise UnreadableImageError(str(path), f"not a readable NIfTI file: {_reason(err)}") from err
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0, :]  # NIfTI vector images put components on the 5th axis
    if data.ndim not in (3, 4):  # a broken case of a dataset: reported and skipped like any other
        raise UnreadableImageError(
            str(path),
            f"expected a 3D volume or a 4D volume with channels last, got shape {tuple(data.shape)}; "
            "convert 2D images with a raster format or stack them first",
            kind="bad-shape",
        )
    if data.dtype == np.float64 or scaled:
        data = data.astype(np.float32)
    check_finite(path, data, what="volume")
    array = data[np.newaxis] if data.ndim == 3 else np.moveaxis(data, -1, 0)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return np.ascontiguousarray(array), np.asarray(img.affine, dtype=np.float64), spacing


def _is_scaled(img) -> bool:
    slope, inter = img.dataobj.slope, img.dataobj.inter
    return not (slope in (1, None) or (isinstance(slope, float) and np.isnan(slope))) or not (
        inter in (0, None) or (isinstance(inter, float) and np.isnan(inter))
    )


def _reason(err: BaseException) -> str:
    # nibabel and gzip say a cut-off file in their own words
    return failure_reason(
        err, ("end of", "compressed file ended", "incomplete", "expected", "cannot reshape")
    )


def write_nifti(array: np.ndarray, affine: np.ndarray | None, path: str | Path) -> Path:
    """Write a volume as NIfTI, atomically (temporary file in the same folder, then rename).

    Args:
        array: (X, Y, Z) or channel-first (C, X, Y, Z); channels are stored last as NIfTI prescribes.
        affine: 4x4 voxel-to-RAS affine; None means unit spacing at the origin.
        path: destination ending in .nii or .nii.gz.

    Returns:
        The written path.
    """
    import nibabel as nib  # deferred: heavy, only NIfTI volumes need it

    path = Path(path)
    if not is_nifti_file(path):
        raise MedlensError(f"cannot write {path}: a NIfTI file name must end in .nii or .nii.gz")
    array = np.asarray(array)
    if array.ndim == 4:
        array = np.moveaxis(array, 0, -1)
    elif array.ndim != 3:
        raise MedlensError(
            f"cannot write {path}: expected (X, Y, Z) or (C, X, Y, Z), got shape {array.shape}"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    img.header.set_xyzt_units("mm", "sec")
    # Keep the real suffix on the temporary name: nibabel picks gzip from ".gz".
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path, suffix=f".tmp{suffix}") as tmp:
        nib.save(img, str(tmp))
    return path
