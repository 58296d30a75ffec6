"""DICOM images as 2D arrays (pydicom >= 3), through the read guard.

The header is parsed first and the declared size (Rows × Columns × NumberOfFrames × SamplesPerPixel ×
bytes per sample) checked before any pixel is decoded. Failures are mapped to one reason each: a file
without the 'DICM' preamble is still read when it parses as DICOM (old exports often lack it), a truncated
uncompressed file says "truncated", and only a compressed transfer syntax without a decoder suggests
installing one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medlens.errors import UnreadableImageError
from medlens.io.guard import check_declared, first_line, looks_truncated

_DECODE_ERRORS = (
    AttributeError,
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
    KeyError,
    TypeError,
    EOFError,
)
DECODER_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"


def read_dicom_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """Decode a DICOM image: modality rescale, VOI window (or LUT), MONOCHROME1 inverted.

    Grayscale images come back as float32 (H, W): after the modality rescale (CT in Hounsfield units), then
    the file's first VOI window when it has one (pydicom maps the window onto the stored bit range), and
    MONOCHROME1 inverted so that larger always means brighter. Colour images (RGB, YBR, PALETTE COLOR) come
    back as (H, W, 3) in RGB with their stored integer dtype. Multi-frame files return ``frame`` (the first by
    default).

    Raises:
        UnreadableImageError: not DICOM, no pixel data, too large, truncated, an unsupported compression or a
            frame out of range.
    """
    return decode_dicom_image(path, frame)[0]


def decode_dicom_image(path: str | Path, frame: int = 0) -> tuple[np.ndarray, list[str]]:
    """:func:`read_dicom_image` plus notes (which frame of a multi-frame file was used)."""
    # deferred: optional heavy dependency, only DICOM sources need it (medlens.io.images imports this module)
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    ds, notes = read_dataset(path)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1 and not 0 <= frame < frames:
        raise UnreadableImageError(str(path), f"frame {frame} requested but the file has {frames} frames")
    if frames > 1:
        notes.append(f"multi-frame DICOM ({frames} frames); frame {frame + 1} was used")
        ds.pixel_array_options(index=frame)  # decode only that frame
    arr = pixel_data(ds, path)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    try:
        if photometric == "PALETTE COLOR":
            rgb = np.asarray(apply_color_lut(arr, ds))
            # keep the top 8 bits of 16-bit palette entries: colour images are uint8 like RGB files
            return ((rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb), notes
        if samples > 1:
            return np.asarray(arr), notes
        arr = apply_modality_lut(arr, ds).astype(np.float32)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            arr = np.asarray(apply_voi_lut(arr, ds, index=0), dtype=np.float32)
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(str(path), f"broken DICOM lookup table ({first_line(err)})") from err
    if photometric == "MONOCHROME1":  # stored with 0 = white; flip so every grayscale image reads alike
        arr = arr.max() + arr.min() - arr
    return arr, notes


def read_dataset(path: str | Path):
    """Parse a DICOM file and check its declared pixel size; return ``(dataset, notes)``.

    Raises:
        UnreadableImageError: not DICOM, no pixel data, or a declared size above the limit.
    """
    # deferred: optional heavy dependency, only DICOM sources need it (medlens.io.images imports this module)
    import pydicom
    from pydicom.errors import InvalidDicomError

    notes: list[str] = []
    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError as invalid:
        try:  # no 'DICM' preamble: many older exports lack it, and pydicom can still parse them
            ds = pydicom.dcmread(str(path), force=True)
        except _DECODE_ERRORS as err:
            raise UnreadableImageError(str(path), f"not a DICOM file ({first_line(err)})") from err
        if "PixelData" not in ds or "Rows" not in ds:
            raise UnreadableImageError(
                str(path), "not a DICOM file: no 'DICM' preamble and no image in it", kind="non-image"
            ) from invalid
        notes.append("no DICOM preamble; read as raw DICOM")
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(str(path), f"not a readable DICOM file ({first_line(err)})") from err
    if "Rows" not in ds and "SOPClassUID" not in ds and "Modality" not in ds:
        raise UnreadableImageError(
            str(path), "not a readable DICOM image (no image header after the preamble; corrupted?)"
        )
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnreadableImageError(
            str(path), "DICOM file without pixel data (a report or structured document?)", kind="non-image"
        )
    check_declared(path, declared_shape(ds), _bytes_per_sample(ds))
    return ds, notes


def declared_shape(ds) -> tuple[int, ...]:
    """(frames, rows, columns, samples) as the header declares them."""
    return (
        int(ds.get("NumberOfFrames", 1) or 1),
        int(ds.get("Rows", 0) or 0),
        int(ds.get("Columns", 0) or 0),
        int(ds.get("SamplesPerPixel", 1) or 1),
    )


def _bytes_per_sample(ds) -> float:
    # Grayscale frames become float32 after the modality rescale; colour stays in its stored integer type.
    allocated = int(ds.get("BitsAllocated", 16) or 16)
    return max(allocated / 8, 4 if int(ds.get("SamplesPerPixel", 1) or 1) == 1 else 1)


def is_compressed(ds) -> bool:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    return bool(syntax is not None and getattr(syntax, "is_compressed", False))


def pixel_data(ds, path: str | Path) -> np.ndarray:
    """Decode the pixel data, with one reason per failure (truncated, compressed without decoder, ...)."""
    try:
        return ds.pixel_array
    except _DECODE_ERRORS as err:
        text = first_line(err)
        if is_compressed(ds) and not _looks_truncated(text):
            syntax = ds.file_meta.get("TransferSyntaxUID")
            raise UnreadableImageError(
                str(path),
                f"pixel data compressed as {getattr(syntax, 'name', syntax)}, "
                f"which no installed decoder reads ({DECODER_HINT})",
            ) from err
        if _looks_truncated(text):
            raise UnreadableImageError(
                str(path),
                f"truncated file: the pixel data is shorter than the header declares ({text})",
                kind="truncated",
            ) from err
        raise UnreadableImageError(str(path), f"not a readable DICOM image ({text})") from err


def _looks_truncated(text: str) -> bool:
    return looks_truncated(text, _DICOM_TRUNCATION)


#: pydicom's ways of saying the pixel data is shorter than Rows × Columns × frames promise.
_DICOM_TRUNCATION = (
    "length of the pixel data",
    "doesn't match the expected length",
    "insufficient",
    "shorter than",
    "less than expected",
)
