"""Read one 2D image from any supported container into a numpy array.

Supported: PNG/JPEG/BMP/GIF/TIFF (Pillow; tifffile for multi-page or >8-bit TIFF), single-frame DICOM
(pydicom, with modality rescale, VOI window and MONOCHROME1 inversion), and arrays inside MedMNIST-style
npz files addressed as ``file.npz::key[index]``. Every failure raises :class:`UnreadableImageError` with the
path and a reason, so datasets can report and skip the file.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np

from medlens.errors import UnreadableImageError

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
NPZ_REF = re.compile(r"^(?P<path>.+\.npz)::(?P<key>[\w\-]+)\[(?P<index>\d+)\]$", re.IGNORECASE)
#: Suffixes that are never 2D images: skipped without opening the file.
NON_IMAGE_SUFFIXES = {".csv", ".tsv", ".json", ".txt", ".md", ".npz", ".npy", ".nii", ".gz", ".zip", ".yaml",
                      ".yml", ".xml", ".html", ".pdf", ".py", ".log", ".ini", ".db", ".pt", ".pth", ".h5"}


def is_image_file(path: str | Path) -> bool:
    """True for files whose suffix is a supported image format, or DICOM by suffix or preamble.

    Files without a known image suffix (``IM0001``, ``MR.1.3.12...``) are opened and count as images only
    when they carry the DICOM preamble.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in RASTER_SUFFIXES or suffix in DICOM_SUFFIXES:
        return True
    return suffix not in NON_IMAGE_SUFFIXES and is_dicom_file(p)


def is_dicom_file(path: str | Path) -> bool:
    """True when the file has the DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image to an array of shape (H, W) or (H, W, C) with C in {3, 4}.

    Integer dtypes are kept (uint8, uint16, ...); DICOM returns float32 after rescale and windowing.

    Raises:
        UnreadableImageError: missing, empty, truncated or undecodable file.
    """
    ref = str(path)
    m = NPZ_REF.match(ref)
    if m:
        return _read_npz(m["path"], m["key"], int(m["index"]))
    p = Path(ref)
    if not p.is_file():
        raise UnreadableImageError(ref, "file not found")
    if p.stat().st_size == 0:
        raise UnreadableImageError(ref, "zero-byte file")
    suffix = p.suffix.lower()
    if suffix in DICOM_SUFFIXES or (suffix not in RASTER_SUFFIXES and is_dicom_file(p)):
        from medlens.io.dicom import read_dicom_image

        return read_dicom_image(p)
    if suffix in {".tif", ".tiff"}:
        return _read_tiff(p)
    return _read_pillow(p)


def _read_pillow(p: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()  # forces full decode: truncated files fail here, not later
            if im.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "1"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB"
                                if im.mode not in ("1", "LA") else "L")
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode == "I":
                return np.asarray(im, dtype=np.int32)
            if im.mode == "F":
                return np.asarray(im, dtype=np.float32)
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UnreadableImageError(str(p), _reason(err)) from err


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence Python warnings and C libraries' writes to stderr (file descriptor 2) for a moment.

    libtiff reports a truncated strip straight to stderr ("TIFFFillStrip: Read error..."), before Pillow raises
    the error that medlens turns into one line; a user should see that line only. Serialised by a lock, since
    the descriptor is process-wide.
    """
    with _STDERR_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            saved = os.dup(2)
        except OSError:  # no stderr descriptor (embedded interpreters): nothing to silence
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _read_tiff(p: Path) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(p)
    except Exception as err:  # tifffile raises many types for broken files
        try:
            with _quiet_native_stderr():  # Pillow's libtiff prints its own errors for a broken file
                return _read_pillow(p)
        except UnreadableImageError:
            raise UnreadableImageError(str(p), _reason(err)) from err
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise UnreadableImageError(str(p), f"expected a 2D image, got an array of shape {arr.shape}")
    return arr


@functools.lru_cache(maxsize=4)
def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:  # allow_pickle=False: never unpickle user data
        return {k: data[k] for k in data.files}


def _read_npz(path: str, key: str, index: int) -> np.ndarray:
    try:
        arrays = _npz_arrays(str(Path(path).resolve()))
    except (OSError, ValueError) as err:
        raise UnreadableImageError(path, _reason(err)) from err
    if key not in arrays:
        raise UnreadableImageError(f"{path}::{key}", f"no array {key!r}; it has {sorted(arrays)}")
    arr = arrays[key]
    if index >= len(arr):
        raise UnreadableImageError(f"{path}::{key}[{index}]", f"index beyond {len(arr)} images")
    return np.asarray(arr[index])


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if "truncated" in text.lower():
        return f"truncated file ({text})"
    return text
