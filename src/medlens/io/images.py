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
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

from medlens.errors import UnreadableImageError
from medlens.io.dicom import decode_dicom_image
from medlens.io.failures import reader_boundary
from medlens.io.guard import check_declared, check_finite, failure_reason, install_bounded_tiff_codecs

RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
NPZ_REF = re.compile(r"^(?P<path>.+\.npz)::(?P<key>[\w\-]+)\[(?P<index>\d+)\]$", re.IGNORECASE)
#: Suffixes that are never 2D images: skipped without opening the file.
NON_IMAGE_SUFFIXES = {
    ".csv",
    ".tsv",
    ".json",
    ".txt",
    ".md",
    ".npz",
    ".npy",
    ".nii",
    ".gz",
    ".zip",
    ".yaml",
    ".yml",
    ".xml",
    ".html",
    ".pdf",
    ".py",
    ".log",
    ".ini",
    ".db",
    ".pt",
    ".pth",
    ".h5",
}


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

    Integer dtypes are kept (uint8, uint16, ...); DICOM returns float32 after rescale and windowing. Every
    file passes the read guard (:mod:`medlens.io.guard`): declared size checked before decoding, NaN/inf
    refused, EXIF orientation applied. A multi-page or multi-frame file gives its first page; use
    :func:`decode_image` to learn that it did.

    Raises:
        UnreadableImageError: missing, empty, truncated, undecodable, too large, or holding NaN/inf.
    """
    return decode_image(path).array


@dataclass(frozen=True)
class Decoded:
    """A decoded 2D image and what the reader had to decide about it.

    Attributes:
        array: (H, W) or (H, W, C).
        notes: one line per decision a user should know about ("5 pages; the first was used").
    """

    array: np.ndarray
    notes: tuple[str, ...] = ()


@reader_boundary
def decode_image(path: str | Path) -> Decoded:
    """Like :func:`read_image`, and also say what was decided (first frame of a multi-frame file, ...)."""
    ref = str(path)
    m = NPZ_REF.match(ref)
    if m:
        return Decoded(check_finite(ref, _read_npz(m["path"], m["key"], int(m["index"]))))
    p = Path(ref)
    if not p.is_file():
        raise UnreadableImageError(ref, "file not found")
    if p.stat().st_size == 0:
        raise UnreadableImageError(ref, "zero-byte file")
    suffix = p.suffix.lower()
    if suffix in DICOM_SUFFIXES or (suffix not in RASTER_SUFFIXES and is_dicom_file(p)):
        arr, notes = decode_dicom_image(p)
    elif suffix in {".tif", ".tiff"}:
        arr, notes = _read_tiff(p)
    else:
        arr, notes = _read_pillow(p)
    return Decoded(check_finite(ref, arr), tuple(notes))


# Pillow's own bomb check (an exception above ~179 Mpx, a warning above ~89 Mpx) counts pixels, not bytes, and
# fires inside Image.open where the declared size is lost; medlens checks declared bytes itself, before
# decoding, against the limit the user chose (check_declared).
Image.MAX_IMAGE_PIXELS = None
install_bounded_tiff_codecs()

#: Decoded bytes per pixel of each Pillow mode, after the conversions below (palette images become RGBA).
_MODE_BYTES = {
    "1": 1,
    "L": 1,
    "P": 4,
    "PA": 4,
    "LA": 2,
    "La": 2,
    "RGB": 3,
    "RGBA": 4,
    "RGBa": 4,
    "RGBX": 4,
    "CMYK": 4,
    "YCbCr": 3,
    "LAB": 3,
    "HSV": 3,
    "I": 4,
    "F": 4,
    "I;16": 2,
    "I;16L": 2,
    "I;16B": 2,
    "I;16N": 2,
}


def _read_pillow(p: Path) -> tuple[np.ndarray, list[str]]:
    notes = []
    try:
        with Image.open(p) as im:
            # Declared size first: Image.open read only the header.
            check_declared(p, (im.height, im.width), _MODE_BYTES.get(im.mode, 4))
            frames = int(getattr(im, "n_frames", 1) or 1)
            im.load()  # forces full decode: truncated files fail here, not later
            if frames > 1:
                notes.append(f"{frames} frames or pages; the first was used")
            if _exif_orientation(im) not in (0, 1):
                im = ImageOps.exif_transpose(im)  # the orientation a viewer shows
            return _pillow_array(im), notes
    except UnreadableImageError:  # the guard's own refusal (a ValueError too): keep its reason as it is
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise UnreadableImageError(str(p), _reason(err)) from err


def _exif_orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except (AttributeError, ValueError, TypeError, SyntaxError, OSError):
        return 1


def _pillow_array(im) -> np.ndarray:
    if im.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "1", "LAB", "HSV", "La", "RGBa", "RGBX"):
        im = im.convert(
            "RGBA"
            if "A" in im.mode or "transparency" in im.info
            else "RGB"
            if im.mode not in ("1", "LA", "La")
            else "L"
        )
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.uint16)
    if im.mode == "I":
        return np.asarray(im, dtype=np.int32)
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32)
    return np.asarray(im)


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence Python warnings and C libraries' writes to stderr (file descriptor 2) for a moment.

    libtiff reports a truncated strip straight to stderr ("TIFFFillStrip: Read error..."), before Pillow
    raises the error that medlens turns into one line; a user should see that line only. Serialised by a lock,
    since the descriptor is process-wide.
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


def _read_tiff(p: Path) -> tuple[np.ndarray, list[str]]:
    """The first page of a TIFF (tifffile: any depth and sample layout; Pillow when tifffile cannot)."""

    try:
        with tifffile.TiffFile(p) as tif:
            page = tif.pages.first
            n_pages = len(tif.pages)
            check_declared(p, page.shape, page.dtype.itemsize if page.dtype is not None else 8)
            arr = np.asarray(page.asarray())
    except UnreadableImageError:
        raise
    except Exception as err:  # tifffile raises many types for broken files
        try:
            with _quiet_native_stderr():  # Pillow's libtiff prints its own errors for a broken file
                return _read_pillow(p)
        except UnreadableImageError as pil_err:
            if pil_err.kind == "too-large":
                raise
            raise UnreadableImageError(str(p), _reason(err)) from err
    notes = [f"{n_pages} pages; the first was used"] if n_pages > 1 else []
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar (C, H, W) -> (H, W, C)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (2, 3, 4)):
        raise UnreadableImageError(
            str(p),
            f"expected a 2D image with 1-4 channels, got an array of shape {arr.shape}",
            kind="bad-shape",
        )
    return arr, notes


@functools.lru_cache(maxsize=4)
def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    for key, (shape, dtype) in npz_headers(path).items():
        check_declared(f"{path}::{key}", shape or (1,), dtype.itemsize, what="array")
    with np.load(path, allow_pickle=False) as data:  # allow_pickle=False: never unpickle user data
        return {k: data[k] for k in data.files}


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an npz, from the .npy headers, without loading any data.

    Raises:
        UnreadableImageError: not a zip of .npy arrays, or an array of Python objects (never unpickled).
    """

    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(fh)
                if dtype.hasobject:
                    raise UnreadableImageError(
                        str(path),
                        f"array {info.filename[:-4]} holds Python objects, "
                        "which medlens never unpickles; save numeric arrays "
                        "(uint8 or float)",
                    )
                out[info.filename[:-4]] = (tuple(shape), dtype)
    except UnreadableImageError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise UnreadableImageError(str(path), f"{_reason(err)}; is it a NumPy .npz file?") from err
    return out


def _read_npz(path: str, key: str, index: int) -> np.ndarray:
    try:
        arrays = _npz_arrays(str(Path(path).resolve()))
    except UnreadableImageError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise UnreadableImageError(path, _reason(err)) from err
    if key not in arrays:
        raise UnreadableImageError(f"{path}::{key}", f"no array {key!r}; it has {sorted(arrays)}")
    arr = arrays[key]
    if index >= len(arr):
        raise UnreadableImageError(f"{path}::{key}[{index}]", f"index beyond {len(arr)} images")
    return np.asarray(arr[index])


def _reason(err: Exception) -> str:
    return failure_reason(err, ("failed to read", "not enough data"))  # tifffile's and Pillow's wording
