"""DICOM series → one volume, with its orientation and spacing (pydicom).

Files are grouped by SeriesInstanceUID; slices are ordered by ImagePositionPatient projected on the slice
normal (the cross product of the two ImageOrientationPatient direction cosines), so the file names and
InstanceNumbers do not matter. The volume is channel-first ``(C, X, Y, Z)`` like
:func:`medlens.io.volumes.read_volume`: X runs along a row (the first IOP cosine), Y down a column, Z along
the slice normal. The affine maps voxel indices to RAS+ mm as nibabel expects: DICOM's patient frame is
LPS, so the first two rows of the LPS affine are negated.

Siemens mosaic files (ImageType contains MOSAIC; each file holds a whole volume tiled in one image) are
unpacked with nibabel's mosaic reader; several mosaic files of one series are the time points of an fMRI/
EPI run and become the channels. Multi-frame (enhanced) files are not supported yet and say so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.dicom import captured_warnings, declared_shape, pixel_data, read_dataset
from medlens.io.dicom_header import header_floats, header_int, pixel_spacing
from medlens.io.guard import check_declared

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
GAP_FACTOR = 1.5  # a step larger than this × the median slice spacing means a slice is missing


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder.

    Attributes:
        uid: SeriesInstanceUID.
        description: SeriesDescription ('' when absent).
        modality: Modality ('' when absent).
        files: the series' files, in no particular order.
    """

    uid: str
    description: str
    modality: str
    files: tuple[Path, ...]


def list_dicom_series(folder: str | Path) -> list[SeriesInfo]:
    """Find the DICOM series under ``folder`` (recursively); files that are not DICOM are skipped."""
    # deferred: optional heavy dependency, only DICOM sources need it
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    if not folder.is_dir():
        raise MedlensError(f"DICOM folder {folder} does not exist or is not a folder")
    groups: dict[str, list] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            with captured_warnings([]):  # a file's oddities must not reach the terminal
                ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError, AttributeError):
            continue  # not DICOM (a README, a .nii beside the series, ...)
        if "Rows" not in ds:  # no image: a structured report, RT plan, waveform or DICOMDIR beside the series
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "unknown")), []).append((path, ds))
    return [
        SeriesInfo(
            uid,
            str(items[0][1].get("SeriesDescription", "")),
            str(items[0][1].get("Modality", "")),
            tuple(p for p, _ in items),
        )
        for uid, items in groups.items()
    ]


def read_dicom_series(
    folder: str | Path, series_uid: str | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read one DICOM series as a channel-first volume.

    Args:
        folder: folder holding the series' files (searched recursively).
        series_uid: which series to read when the folder holds several.

    Returns:
        ``(volume, affine, spacing)``: float32 array (C, X, Y, Z) after the modality rescale, the 4x4
        voxel-to-RAS affine, and the voxel size (x, y, z) in mm.

    Raises:
        MedlensError: no DICOM files, several series and no ``series_uid``, mixed orientations, a missing
            slice, duplicate slice positions, or pixel data that cannot be decoded.
    """
    series = list_dicom_series(folder)
    if not series:
        raise MedlensError(f"no DICOM files found under {folder}")
    if series_uid is not None:
        chosen = [s for s in series if s.uid == series_uid]
        if not chosen:
            raise MedlensError(f"series {series_uid} is not in {folder}; it holds {[s.uid for s in series]}")
    elif len(series) > 1:
        listing = "; ".join(f"{s.uid} ({s.description or s.modality}, {len(s.files)} files)" for s in series)
        raise MedlensError(
            f"{folder} holds {len(series)} DICOM series: {listing}; pass series_uid to pick one"
        )
    else:
        chosen = series
    with captured_warnings([]):  # pydicom's warnings about a slice must not reach the terminal
        return _read_series(chosen[0])


def _read_series(info: SeriesInfo) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:

    datasets = [_read_file(p) for p in info.files]
    shapes = [declared_shape(ds) for ds in datasets]
    # The whole series is decoded into one float32 volume: check its declared size before decoding a slice.
    check_declared(info.files[0].parent, (sum(f for f, *_ in shapes), *max(shapes)[1:]), 4, what="series")
    if any("MOSAIC" in [str(v).upper() for v in ds.get("ImageType", [])] for ds in datasets):
        return _read_mosaic(info, datasets)
    if any(header_int(ds, "NumberOfFrames", 1) > 1 for ds in datasets):
        raise MedlensError(
            f"series {info.uid} ({info.files[0].parent}) holds multi-frame files; multi-frame "
            "DICOM volumes are not supported yet: export the series as single-frame files"
        )
    for ds, path in zip(datasets, info.files):
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise MedlensError(
                f"{path} (series {info.uid}) has no ImagePositionPatient/"
                "ImageOrientationPatient; cannot place its slices in a volume"
            )
    row, col = _check_orientation(info, datasets)
    normal = np.cross(row, col)
    where = _where(info)
    positions = np.array(
        [header_floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", where) for ds in datasets]
    )
    order = np.argsort(positions @ normal, kind="stable")
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    _check_spacing(info, positions @ normal, _declared_step(datasets[0]))
    pixels = [_slice_pixels(ds, path) for ds, path in zip(datasets, [info.files[i] for i in order])]
    if len({p.shape for p in pixels}) > 1:
        raise MedlensError(
            f"series {info.uid} ({info.files[0].parent}) mixes image sizes "
            f"{sorted({p.shape for p in pixels})}; cannot stack it into a volume"
        )
    volume = np.stack(pixels, axis=-1)  # (C, X, Y, Z)
    dy, dx = pixel_spacing(datasets[0].get("PixelSpacing"), _where(info))
    if len(datasets) > 1:
        # The mean step between first and last slice keeps a gantry tilt as a shear instead of losing it.
        step = (positions[-1] - positions[0]) / (len(datasets) - 1)
    else:
        step = normal * float(datasets[0].get("SpacingBetweenSlices", datasets[0].get("SliceThickness", 1.0)))
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * dx, col * dy, step, positions[0]
    return volume, LPS_TO_RAS @ lps, (dx, dy, float(np.linalg.norm(step)))


def _check_orientation(info: SeriesInfo, datasets: list) -> tuple[np.ndarray, np.ndarray]:
    iops = np.array(
        [
            header_floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", _where(info))
            for ds in datasets
        ]
    )
    distinct = [iops[0]]
    for iop in iops[1:]:
        if not any(np.allclose(iop, d, atol=1e-4) for d in distinct):
            distinct.append(iop)
    if len(distinct) > 1:
        shown = ", ".join(str([round(v, 4) for v in d]) for d in distinct[:3])
        raise MedlensError(
            f"mixed orientations in series {info.uid} ({info.files[0].parent}): "
            f"{len(distinct)} different ImageOrientationPatient values ({shown}); "
            "export each orientation as its own series"
        )
    row, col = iops[0][:3], iops[0][3:]
    if min(np.linalg.norm(row), np.linalg.norm(col)) < 1e-6 or np.linalg.norm(np.cross(row, col)) < 1e-6:
        raise MedlensError(
            f"series {info.uid} ({info.files[0].parent}): ImageOrientationPatient "
            f"{[round(float(v), 4) for v in iops[0]]} is not two independent direction cosines; "
            "fix the header or re-export the series"
        )
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _check_spacing(info: SeriesInfo, along_normal: np.ndarray, declared: float | None = None) -> None:
    """Refuse slices at one position and gaps where a slice is missing.

    The reference step is the smallest one (or the header's SpacingBetweenSlices when smaller): with the
    median, a 4-slice series missing its third slice (steps 1, 2, 1... or just 1, 2) could hide the gap.
    """
    steps = np.diff(along_normal)
    if steps.size and (steps < 1e-3).any():
        n_same = int((steps < 1e-3).sum()) + 1
        raise MedlensError(
            f"series {info.uid} ({info.files[0].parent}) has {n_same} images at the same slice "
            "position (several echoes, time points or a repeated acquisition in one series); "
            "export each as its own series or keep one file per position"
        )
    if steps.size < 1:
        return
    reference = float(steps.min())
    if declared and 0 < declared < reference:
        reference = declared
    worst = int(np.argmax(steps))
    if steps[worst] > GAP_FACTOR * reference:
        missing = max(1, round(steps[worst] / reference) - 1)
        raise MedlensError(
            f"missing slice in series {info.uid} ({info.files[0].parent}): a gap of "
            f"{steps[worst]:.2f} mm between slice positions {along_normal[worst]:.2f} and "
            f"{along_normal[worst + 1]:.2f} (median spacing {float(np.median(steps)):.2f} mm), "
            f"about {missing} slice(s) missing; re-export the complete series"
        )


def _where(info: SeriesInfo) -> str:
    return f"series {info.uid} ({info.files[0].parent})"


def _declared_step(ds) -> float | None:
    try:
        value = float(ds.get("SpacingBetweenSlices", 0) or 0)
    except (TypeError, ValueError):
        return None
    return value or None


def _read_file(path: Path):
    try:
        return read_dataset(path)[0]
    except UnreadableImageError as err:
        raise MedlensError(f"cannot read {path} of its DICOM series: {err.reason}") from err


def _slice_pixels(ds, path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut  # deferred: heavy, only DICOM sources need it

    arr = _decode(ds, path)
    if header_int(ds, "SamplesPerPixel", 1) == 1:
        arr = apply_modality_lut(arr, ds)[np.newaxis]  # (1, rows, cols)
    else:
        arr = np.moveaxis(arr, -1, 0)  # colour (rows, cols, S) -> (S, rows, cols)
    return np.asarray(arr, dtype=np.float32).transpose(0, 2, 1)  # (C, X=cols, Y=rows)


def _decode(ds, path: Path) -> np.ndarray:
    try:
        return pixel_data(ds, path)
    except UnreadableImageError as err:
        series = ds.get("SeriesInstanceUID", "?")
        raise MedlensError(f"cannot decode the pixel data of {path} (series {series}): {err.reason}") from err


def _read_mosaic(
    info: SeriesInfo, datasets: list
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns that its DICOM readers are experimental
        from nibabel.nicom import dicomwrappers  # deferred: heavy, only Siemens mosaic series need it

    pairs = sorted(zip(datasets, info.files), key=lambda dp: int(dp[0].get("InstanceNumber", 0) or 0))
    volumes, affines = [], []
    for ds, path in pairs:
        _decode(ds, path)  # a clear error for compressed files before nibabel's own
        try:
            wrapper = dicomwrappers.wrapper_from_data(ds)
            volumes.append(np.asarray(wrapper.get_data(), dtype=np.float32))
            affines.append(np.asarray(wrapper.affine, dtype=np.float64))
        except Exception as err:  # nibabel raises many types for unusual mosaics
            raise MedlensError(f"cannot unpack the Siemens mosaic {path} (series {info.uid}): {err}") from err
    if len({v.shape for v in volumes}) > 1 or not all(np.allclose(a, affines[0], atol=1e-3) for a in affines):
        raise MedlensError(
            f"mosaic series {info.uid} ({info.files[0].parent}) has files of different "
            "geometry; export each acquisition as its own series"
        )
    # nibabel indexes (row, column, slice); medlens indexes (column, row, slice) like the slice reader.
    volume = np.stack([v.transpose(1, 0, 2) for v in volumes])
    lps = affines[0][:, [1, 0, 2, 3]]
    spacing = tuple(float(np.linalg.norm(lps[:3, i])) for i in range(3))
    return volume, LPS_TO_RAS @ lps, spacing


def read_multiframe_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read one multi-frame (enhanced) DICOM file as a channel-first volume ``(1, X, Y, Z)``.

    Frames are placed by their per-frame ImagePositionPatient (PerFrameFunctionalGroupsSequence) and the
    shared orientation and pixel spacing; a file without per-frame positions is stacked in frame order with
    the header's slice spacing (1 mm when absent). The same gap and duplicate-position checks as a series
    apply.

    Raises:
        MedlensError: unreadable, a single frame, colour frames, or frames that do not form a volume.
    """
    path = Path(path)
    ds = _read_file(path)
    frames = header_int(ds, "NumberOfFrames", 1)
    if frames < 2:
        raise MedlensError(
            f"{path} is a single 2D DICOM image; a 3D model needs a DICOM series folder, a "
            "multi-frame DICOM file or a NIfTI volume"
        )
    if header_int(ds, "SamplesPerPixel", 1) != 1:
        raise MedlensError(f"{path}: colour multi-frame DICOM is not a volume medlens can segment")
    with captured_warnings([]):
        pixels = np.asarray(_decode(ds, path), dtype=np.float32)  # (frames, rows, cols)
    slope, intercept = _rescale(ds)
    pixels = pixels * slope + intercept
    info = SeriesInfo(str(ds.get("SeriesInstanceUID", "?")), "", str(ds.get("Modality", "")), (path,))
    shared = _group(ds, "SharedFunctionalGroupsSequence", 0)
    iop = _nested(shared, "PlaneOrientationSequence", "ImageOrientationPatient") or ds.get(
        "ImageOrientationPatient"
    )
    spacing_rc = _nested(shared, "PixelMeasuresSequence", "PixelSpacing") or ds.get("PixelSpacing")
    dy, dx = pixel_spacing(spacing_rc, _where(info))
    positions = [
        _nested(
            _group(ds, "PerFrameFunctionalGroupsSequence", i), "PlanePositionSequence", "ImagePositionPatient"
        )
        for i in range(frames)
    ]
    if iop is None or any(p is None for p in positions):
        step = float(ds.get("SpacingBetweenSlices", 0) or ds.get("SliceThickness", 0) or 1.0)
        affine = LPS_TO_RAS @ np.diag([dx, dy, step, 1.0])
        return pixels.transpose(2, 1, 0)[np.newaxis], affine, (dx, dy, step)
    row = np.array([float(v) for v in iop[:3]])
    col = np.array([float(v) for v in iop[3:]])
    normal = np.cross(row, col)
    pos = np.array([[float(v) for v in p] for p in positions])
    order = np.argsort(pos @ normal, kind="stable")
    pos, pixels = pos[order], pixels[order]
    _check_spacing(info, pos @ normal, _declared_step(ds))
    step_vec = (pos[-1] - pos[0]) / (frames - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * dx, col * dy, step_vec, pos[0]
    return pixels.transpose(2, 1, 0)[np.newaxis], LPS_TO_RAS @ lps, (dx, dy, float(np.linalg.norm(step_vec)))


def _group(ds, keyword: str, index: int):
    seq = ds.get(keyword)
    return seq[index] if seq is not None and len(seq) > index else None


def _nested(item, sequence: str, keyword: str):
    if item is None or sequence not in item or not len(item[sequence].value):
        return None
    return item[sequence].value[0].get(keyword)


def _rescale(ds) -> tuple[float, float]:
    item = _group(ds, "SharedFunctionalGroupsSequence", 0)
    source = (
        item["PixelValueTransformationSequence"].value[0]
        if item is not None
        and "PixelValueTransformationSequence" in item
        and len(item["PixelValueTransformationSequence"].value)
        else ds
    )
    return float(source.get("RescaleSlope", 1) or 1), float(source.get("RescaleIntercept", 0) or 0)
