"""DICOM headers before any pixel: malformed values, a missing file meta group, and non-image objects.

- **Malformed values.** Every header value the pixel pipeline turns into a number (Rows, NumberOfFrames,
  RescaleSlope, WindowCenter, ...) is checked once, so that a value like NumberOfFrames ``'1A'`` is refused
  as one line naming the file and the field, never a ``ValueError`` deep inside the decoder.
- **No file meta group.** A file written without the preamble and without its file meta group has no
  transfer syntax; pydicom still parses it and records how it was encoded (implicit or explicit VR, byte
  order), which is the transfer syntax of a file whose pixel data is not compressed.
- **Non-image objects.** Structured reports, DICOMDIRs, RT plans, waveforms and other DICOM objects that
  hold no image are named for what they are ("a DICOM structured report (Comprehensive SR Storage), not an
  image"), from their SOP Class UID.
"""

from __future__ import annotations

import math
from pathlib import Path

from medlens.errors import MedlensError, UnreadableImageError

#: Header values the pixel pipeline reads as whole numbers.
INTEGER_FIELDS = (
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
)
#: Header values the modality and VOI transforms read as decimal numbers (possibly several).
DECIMAL_FIELDS = ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

#: (UID prefix or name fragment, what the object is), first match wins.
_NON_IMAGE_KINDS = (
    ("1.2.840.10008.1.3.10", "a DICOM directory (DICOMDIR) that lists other files"),
    ("1.2.840.10008.5.1.4.1.1.88.", "a DICOM structured report"),
    ("1.2.840.10008.5.1.4.1.1.9.", "a DICOM waveform"),
    ("1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document in DICOM"),
    ("1.2.840.10008.5.1.4.1.1.11.", "a DICOM presentation state"),
    ("1.2.840.10008.5.1.4.1.1.66", "a DICOM registration, segmentation-surface or raw-data object"),
    ("1.2.840.10008.5.1.4.1.1.481.3", "a DICOM RT structure set"),
    ("1.2.840.10008.5.1.4.1.1.481.", "a DICOM radiotherapy object"),
)


def check_fields(ds, path: str | Path) -> None:
    """Refuse a header whose numeric pixel fields do not hold numbers.

    Raises:
        UnreadableImageError: naming the field, its tag and the value it holds.
    """
    from pydicom.datadict import tag_for_keyword  # deferred: optional heavy dependency
    from pydicom.tag import Tag

    for keyword, integer in [(k, True) for k in INTEGER_FIELDS] + [(k, False) for k in DECIMAL_FIELDS]:
        if keyword not in ds:
            continue
        tag = Tag(tag_for_keyword(keyword))
        try:
            raw = ds[keyword].value
        except Exception as err:  # pydicom converts raw elements lazily: any failure is a bad value
            raise UnreadableImageError(
                str(path),
                f"malformed DICOM header: {keyword} {tag} cannot be decoded ({type(err).__name__}); "
                "fix the value or re-export the file",
                kind="undecodable",
            ) from err
        values = [] if raw is None or raw == "" else list(raw) if _is_multi(raw) else [raw]
        for value in values:
            if _number(value, integer) is None:
                raise _malformed(path, keyword, tag, value, integer)


def header_int(ds, keyword: str, default: int) -> int:
    """A whole-number header value (already checked by :func:`check_fields`), ``default`` when empty."""
    value = ds.get(keyword, None)
    number = _number(value, True) if value not in (None, "") else None
    return int(number) if number else default


def _is_multi(value) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _number(value, integer: bool) -> float | None:
    if isinstance(value, bytes | bytearray):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(x) or (integer and x != int(x)):
        return None
    return x


def _malformed(path, keyword: str, tag, value, integer: bool) -> UnreadableImageError:
    kind = "a whole number" if integer else "a number"
    shown = repr(str(value))[:60]
    return UnreadableImageError(
        str(path),
        f"malformed DICOM header: {keyword} {tag} holds {shown}, which is not {kind}; "
        "fix the value or re-export the file",
        kind="undecodable",
    )


def infer_transfer_syntax(ds, path: str | Path) -> str | None:
    """Give a dataset without a transfer syntax the one its encoding implies; return a note (or None).

    A file without the file meta group (or with one that lacks (0002,0010)) was parsed by pydicom in the
    encoding it detected; for pixel data that is not encapsulated (compressed) that encoding *is* the
    transfer syntax.

    Raises:
        UnreadableImageError: compressed pixel data (the codec cannot be inferred), or an encoding pydicom
            could not tell.
    """
    from pydicom.dataset import FileMetaDataset  # deferred: optional heavy dependency
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return None
    implicit, little = getattr(ds, "original_encoding", (None, None))
    syntax = {
        (True, True): ImplicitVRLittleEndian,
        (False, True): ExplicitVRLittleEndian,
        (False, False): ExplicitVRBigEndian,
    }.get((implicit, little))
    if syntax is None:
        raise UnreadableImageError(
            str(path), "DICOM file without a transfer syntax whose encoding cannot be told; re-export it"
        )
    if "PixelData" in ds and _encapsulated(ds):
        raise UnreadableImageError(
            str(path),
            "DICOM file with compressed pixel data but no transfer syntax in its file meta; the codec "
            "cannot be inferred: re-export the file with its file meta header",
        )
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    meta.TransferSyntaxUID = syntax
    where = "no DICOM file meta header" if len(meta) <= 1 else "no transfer syntax in the DICOM file meta"
    return f"{where}; read as {syntax.name}, the encoding the file is written in"


def _encapsulated(ds) -> bool:
    element = ds["PixelData"]
    if getattr(element, "is_undefined_length", False):
        return True
    value = element.value
    return isinstance(value, bytes | bytearray) and value[:4] == b"\xfe\xff\x00\xe0"


def sop_class(ds):
    """The object's SOP Class UID (from the dataset, else the file meta), or None."""
    uid = ds.get("SOPClassUID", None)
    meta = getattr(ds, "file_meta", None)
    if not uid and meta is not None:
        uid = meta.get("MediaStorageSOPClassUID", None)
    return uid or None


def non_image_reason(ds) -> str:
    """What a DICOM object without pixel data is, as one line ("a DICOM structured report (...), not an
    image"); a dataset that names no SOP class (random bytes after a preamble parse into one) says so."""
    uid = sop_class(ds)
    name = _class_name(uid)
    if "DirectoryRecordSequence" in ds:
        return "a DICOM directory (DICOMDIR) that lists other files, not an image; give the image files"
    if uid is not None:
        if "Image" in name:  # an image class (CT, MR, RT Image, ...) whose pixel data is missing
            return f"DICOM file without pixel data: its header says {name}, but it holds no image"
        for prefix, what in _NON_IMAGE_KINDS:
            if str(uid).startswith(prefix):
                return f"{what} ({name}), not an image"
        return f"a DICOM {name} object, not an image"
    keywords = [e.keyword or str(e.tag) for e in list(ds)[:4]]
    listed = ", ".join(keywords) + (", ..." if len(ds) > 4 else "")
    return (
        f"not a readable DICOM image: no pixel data and no SOP class among its {len(ds)} header elements "
        f"({listed})"
    )


def _class_name(uid) -> str:
    if uid is None:
        return "unknown class"
    name = str(getattr(uid, "name", "") or uid)
    return name.removesuffix(" SOP Class").strip() or str(uid)


def has_pixels(ds) -> bool:
    """True when the dataset holds a pixel data element of any kind."""
    return any(k in ds for k in PIXEL_KEYWORDS)


def header_floats(value, n: int, keyword: str, where: str) -> list[float]:
    """``n`` finite numbers from a multi-valued header field, or one line naming the field and ``where``.

    Raises:
        MedlensError: a missing, short or non-numeric value.
    """
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError) as err:
        raise _bad_field(keyword, value, f"{n} numbers", where) from err
    if len(numbers) != n or not all(math.isfinite(x) for x in numbers):
        raise _bad_field(keyword, value, f"{n} numbers", where)
    return numbers


def pixel_spacing(value, where: str) -> tuple[float, float]:
    """(row spacing, column spacing) in mm; 1 mm each when the header has none.

    Raises:
        MedlensError: a spacing that is not two positive sizes (0 would make the volume's affine singular).
    """
    if value is None or value == "":
        return 1.0, 1.0
    dy, dx = header_floats(value, 2, "PixelSpacing", where)
    if dy <= 0 or dx <= 0:
        raise _bad_field("PixelSpacing", value, "two positive sizes in mm", where)
    return dy, dx


def _bad_field(keyword: str, value, expected: str, where: str) -> MedlensError:
    items = list(value) if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else None
    try:
        shown = f"[{', '.join(f'{float(v):g}' for v in items)}]" if items is not None else repr(value)
    except (TypeError, ValueError):
        shown = repr([str(v) for v in items])
    return MedlensError(
        f"{where}: {keyword} is {shown}, not {expected}; fix the header or re-export the series"
    )
