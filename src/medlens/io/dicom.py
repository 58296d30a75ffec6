"""DICOM images as 2D arrays (pydicom)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medlens.errors import UnreadableImageError


def read_dicom_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """Decode a DICOM image: modality rescale, VOI window (or LUT), MONOCHROME1 inverted.

    Multi-frame files return ``frame`` (the first by default). Colour (RGB/YBR) images return (H, W, 3)
    uint8 in RGB.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array
    except (InvalidDicomError, AttributeError, OSError, ValueError, RuntimeError, NotImplementedError) as err:
        raise UnreadableImageError(str(path), f"not a readable DICOM image ({err})") from err
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[frame]
    if samples > 1:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        return np.asarray(arr)
    arr = apply_modality_lut(arr, ds).astype(np.float32)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        arr = np.asarray(apply_voi_lut(arr, ds, index=0), dtype=np.float32)
    if photometric == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr
