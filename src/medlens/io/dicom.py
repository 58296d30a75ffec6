"""DICOM images as 2D arrays (pydicom >= 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medlens.errors import UnreadableImageError

_DECODE_ERRORS = (AttributeError, OSError, ValueError, RuntimeError, NotImplementedError, KeyError, TypeError)


def read_dicom_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """Decode a DICOM image: modality rescale, VOI window (or LUT), MONOCHROME1 inverted.

    Grayscale images come back as float32 (H, W): after the modality rescale (CT in Hounsfield units), then
    the file's first VOI window when it has one (pydicom maps the window onto the stored bit range), and
    MONOCHROME1 inverted so that larger always means brighter. Colour images (RGB, YBR, PALETTE COLOR) come
    back as (H, W, 3) in RGB with their stored integer dtype. Multi-frame files return ``frame`` (the first by
    default).

    Raises:
        UnreadableImageError: not DICOM, no pixel data, an unsupported compression or a frame out of range.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
        # pydicom >= 3 already converts YBR colour to RGB here (as_rgb=True), so no second conversion below.
        arr = ds.pixel_array
    except (InvalidDicomError, *_DECODE_ERRORS) as err:
        raise UnreadableImageError(str(path), f"not a readable DICOM image ({_first_line(err)})") from err
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        if not 0 <= frame < frames:
            raise UnreadableImageError(str(path), f"frame {frame} requested but the file has {frames} frames")
        arr = arr[frame]
    try:
        if photometric == "PALETTE COLOR":
            rgb = np.asarray(apply_color_lut(arr, ds))
            # keep the top 8 bits of 16-bit palette entries: colour images are uint8 like RGB files
            return (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb
        if samples > 1:
            return np.asarray(arr)
        arr = apply_modality_lut(arr, ds).astype(np.float32)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            arr = np.asarray(apply_voi_lut(arr, ds, index=0), dtype=np.float32)
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(str(path), f"broken DICOM lookup table ({_first_line(err)})") from err
    if photometric == "MONOCHROME1":  # stored with 0 = white; flip so every grayscale image reads alike
        arr = arr.max() + arr.min() - arr
    return arr


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
