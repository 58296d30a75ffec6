"""DICOM images as 2D arrays (pydicom >= 3), through the read guard.

The header is parsed first and checked (:mod:`medlens.io.dicom_header`: numeric fields that hold numbers, a
transfer syntax, pixel data at all) and the declared size (Rows × Columns × NumberOfFrames × SamplesPerPixel
× bytes per sample) checked before any pixel is decoded. Failures are mapped to one reason each: a file
without the 'DICM' preamble is still read when it parses as DICOM (old exports often lack it), one without
its file meta group too (its transfer syntax is the encoding it is written in), a truncated uncompressed
file says "truncated", a DICOM object that holds no image says what it is (a structured report, an RT plan,
a DICOMDIR), and compressed pixel data that no decoder reads says which syntax and why. pydicom's warnings
are kept as read notes instead of reaching the terminal.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medlens.errors import UnreadableImageError
from medlens.io.dicom_header import (
    check_fields,
    has_pixels,
    header_int,
    infer_transfer_syntax,
    non_image_reason,
    sop_class,
)
from medlens.io.dicom_pixels import apply_palette, decoder_failure
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
    IndexError,
    OverflowError,
    struct.error,
)
DECODER_HINT = "pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg"
#: warnings.catch_warnings swaps process-wide state: readers in worker threads take turns.
_WARNINGS_LOCK = threading.RLock()
#: Where a warning raised while reading DICOM comes from when it is about the file (pydicom, its decoders).
_READER_MODULES = {"pydicom", "pylibjpeg", "openjpeg", "libjpeg", "rle", "PIL"}


def read_dicom_image(path: str | Path, frame: int = 0) -> np.ndarray:
    """Decode a DICOM image: modality rescale, VOI window (or LUT), MONOCHROME1 inverted, palette applied.

    Grayscale images come back as float32 (H, W): after the modality rescale (CT in Hounsfield units), then
    the file's first VOI window when it has one (pydicom maps the window onto the stored bit range), and
    MONOCHROME1 inverted so that larger always means brighter. Colour images (RGB, YBR) come back as
    (H, W, 3) in RGB with their stored integer dtype; PALETTE COLOR as (H, W, 3) uint8 through the file's own
    LUTs. Multi-frame files return ``frame`` (the first by default).

    Raises:
        UnreadableImageError: not DICOM, no image in it (with what it is), a malformed header value, too
            large, truncated, an unknown transfer syntax, an undecodable compression or a frame out of range.
    """
    return decode_dicom_image(path, frame)[0]


def decode_dicom_image(path: str | Path, frame: int = 0) -> tuple[np.ndarray, list[str]]:
    """:func:`read_dicom_image` plus notes (the frame used of a multi-frame file, pydicom's warnings)."""
    notes: list[str] = []
    with captured_warnings(notes), _one_line(path):
        ds, read_notes = _read(path)
        arr = _decode(ds, path, frame, read_notes)
    return arr, read_notes + [n for n in notes if n not in read_notes]


@contextlib.contextmanager
def _one_line(path: str | Path) -> Iterator[None]:
    """Whatever a damaged file makes pydicom raise becomes one :class:`UnreadableImageError` line.

    pydicom parses lazily: a damaged element raises at its first access, anywhere in the pipeline, with any
    of its exception types (``BytesLengthException``, ...). The exception's type stays in the message, so a
    medlens bug would still show as one.
    """
    try:
        yield
    except UnreadableImageError:
        raise
    except Exception as err:
        text = f"{type(err).__name__}: {first_line(err)}"
        raise UnreadableImageError(str(path), f"not a readable DICOM file ({text[:300]})") from err


def _decode(ds, path: str | Path, frame: int, notes: list[str]) -> np.ndarray:
    # deferred: optional heavy dependency, only DICOM sources need it (medlens.io.images imports this module)
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    frames = header_int(ds, "NumberOfFrames", 1)
    if frames > 1 and not 0 <= frame < frames:
        raise UnreadableImageError(str(path), f"frame {frame} requested but the file has {frames} frames")
    if frames > 1:
        notes.append(f"multi-frame DICOM ({frames} frames); frame {frame + 1} was used")
    arr = pixel_data(ds, path, frame if frames > 1 else None)  # decode only that frame
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").upper()
    try:
        if photometric == "PALETTE COLOR":
            return apply_palette(ds, arr, path)
        if header_int(ds, "SamplesPerPixel", 1) > 1:
            arr = np.asarray(arr)  # a big-endian file decodes big-endian, which torch refuses
            return arr.astype(arr.dtype.newbyteorder("="))
        # the VOI step gets the modality step's own output: a VOI LUT indexes stored integers, not float32
        arr = apply_modality_lut(arr, ds)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            arr = apply_voi_lut(arr, ds, index=0)
        arr = np.asarray(arr, dtype=np.float32)
    except UnreadableImageError:
        raise
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(str(path), f"broken DICOM lookup table ({first_line(err)})") from err
    if photometric == "MONOCHROME1":  # stored with 0 = white; flip so every grayscale image reads alike
        arr = arr.max() + arr.min() - arr
    return arr


@contextlib.contextmanager
def captured_warnings(notes: list[str]) -> Iterator[None]:
    """Keep pydicom's warnings as read notes (one line each) instead of letting them reach the terminal.

    Warnings that other code raises meanwhile (another thread's) are passed on unchanged.
    """
    with _WARNINGS_LOCK:
        caught: list = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield
        finally:
            for w in caught:
                if not _READER_MODULES.intersection(Path(w.filename or "").parts):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                elif issubclass(w.category, UserWarning):
                    text = str(w.message).split(" Please see <")[0].strip()
                    note = f"pydicom: {text.splitlines()[0] if text else w.category.__name__}"
                    if note not in notes:
                        notes.append(note)


def read_dataset(path: str | Path):
    """Parse a DICOM file and check its header and declared pixel size; return ``(dataset, notes)``.

    Raises:
        UnreadableImageError: not DICOM, no image in it, a malformed header value, an unknown transfer
            syntax, or a declared size above the limit.
    """
    notes: list[str] = []
    with captured_warnings(notes), _one_line(path):
        ds, read_notes = _read(path)
    return ds, read_notes + [n for n in notes if n not in read_notes]


def _read(path: str | Path):
    ds, notes = _parse(path)
    if len(ds) == 0:
        raise UnreadableImageError(
            str(path), "not a readable DICOM image (no image header after the preamble; corrupted?)"
        )
    if not has_pixels(ds):
        reason = non_image_reason(ds)
        raise UnreadableImageError(str(path), reason, kind=None if "SOP class" in reason else "non-image")
    check_fields(ds, path)
    if "Rows" not in ds or "Columns" not in ds:
        raise UnreadableImageError(
            str(path), "DICOM pixel data without Rows/Columns in the header: the image size is unknown"
        )
    note = infer_transfer_syntax(ds, path)
    if note:
        notes.append(note)
    _check_syntax(ds, path)
    check_declared(path, declared_shape(ds), _bytes_per_sample(ds))
    return ds, notes


def _parse(path: str | Path):
    # deferred: optional heavy dependency, only DICOM sources need it (medlens.io.images imports this module)
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path)), []
    except InvalidDicomError as invalid:
        try:  # no 'DICM' preamble: many older exports lack it, and pydicom can still parse them
            ds = pydicom.dcmread(str(path), force=True)
            looks_dicom = (has_pixels(ds) and "Rows" in ds) or _known_class(ds)
        except _DECODE_ERRORS as err:
            raise UnreadableImageError(str(path), f"not a DICOM file ({first_line(err)})") from err
        if not looks_dicom:
            raise UnreadableImageError(
                str(path), "not a DICOM file: no 'DICM' preamble and no image in it", kind="non-image"
            ) from invalid
        return ds, ["no DICOM preamble; read as raw DICOM"]
    except _DECODE_ERRORS as err:
        raise UnreadableImageError(str(path), f"not a readable DICOM file ({first_line(err)})") from err


def _known_class(ds) -> bool:
    """True when the dataset names a SOP class pydicom knows (a forced parse of random bytes does not)."""
    uid = sop_class(ds)
    return uid is not None and str(getattr(uid, "name", uid)) != str(uid)


def _check_syntax(ds, path: str | Path) -> None:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not getattr(syntax, "is_transfer_syntax", False):
        raise UnreadableImageError(
            str(path),
            f"unknown DICOM transfer syntax {str(syntax)!r} in the file meta: the pixel data's encoding "
            "cannot be told; re-export the file with a standard transfer syntax",
            kind="undecodable",
        )


def non_image_dicom(path: str | Path) -> str | None:
    """Why a DICOM file holds no image, from its header only (the pixel data is never read); else None.

    None also for a file that cannot be parsed or whose header cannot tell: decoding it will say why.
    """
    # deferred: optional heavy dependency
    import pydicom

    with captured_warnings([]):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, defer_size="64 KB")
            if len(ds) == 0 or "Rows" in ds or has_pixels(ds) or sop_class(ds) is None:
                return None
            if "Image" in str(getattr(sop_class(ds), "name", "")) and "DirectoryRecordSequence" not in ds:
                return None  # an image class whose pixels stop_before_pixels skipped
            return non_image_reason(ds)
        except Exception:  # a damaged header: decoding the file will say what is wrong with it
            return None


def declared_shape(ds) -> tuple[int, ...]:
    """(frames, rows, columns, samples) as the header declares them."""
    return (
        header_int(ds, "NumberOfFrames", 1),
        header_int(ds, "Rows", 0),
        header_int(ds, "Columns", 0),
        header_int(ds, "SamplesPerPixel", 1),
    )


def _bytes_per_sample(ds) -> float:
    # Grayscale frames become float32 after the modality rescale; colour stays in its stored integer type.
    allocated = header_int(ds, "BitsAllocated", 16)
    return max(allocated / 8, 4 if header_int(ds, "SamplesPerPixel", 1) == 1 else 1)


def is_compressed(ds) -> bool:
    """True when the file meta names a known compressed transfer syntax."""
    syntax = _syntax(ds)
    return bool(getattr(syntax, "is_transfer_syntax", False) and syntax.is_compressed)


def _syntax(ds):
    meta = getattr(ds, "file_meta", None)
    return meta.get("TransferSyntaxUID") if meta is not None else None


def pixel_data(ds, path: str | Path, index: int | None = None) -> np.ndarray:
    """Decode the pixel data (only frame ``index`` when given), with one reason per failure (truncated,
    compressed without a decoder, ...)."""
    options: dict = {} if index is None else {"index": index}
    if _syntax(ds) == "1.2.840.10008.1.2.5":
        # RLE: pydicom's own decoder; pylibjpeg-rle (Rust) panics on damaged data and prints to the terminal
        options["decoding_plugin"] = "pydicom"
    if options:
        ds.pixel_array_options(**options)
    try:
        return _decode_pixels(ds)
    except _DECODE_ERRORS as err:
        text = first_line(err)
        if _looks_truncated(text):
            raise UnreadableImageError(
                str(path),
                f"truncated file: the pixel data is shorter than the header declares ({text})",
                kind="truncated",
            ) from err
        if is_compressed(ds):
            raise decoder_failure(ds, err, path, DECODER_HINT) from err
        raise UnreadableImageError(str(path), f"not a readable DICOM image ({text})") from err


def _decode_pixels(ds) -> np.ndarray:
    """``ds.pixel_array``; a Rust decoder's panic (``pyo3_runtime.PanicException``, a BaseException that
    pydicom does not catch) becomes a RuntimeError."""
    try:
        return ds.pixel_array
    except Exception:
        raise
    except BaseException as err:
        if type(err).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit: never swallowed
        raise RuntimeError(f"the decoder crashed on this pixel data: {first_line(err)}") from err


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
