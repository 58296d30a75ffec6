"""DICOM pixel decoding details: palette colour applied from the header, and decoder failures as one line.

**Palette colour.** pydicom 3.0's ``apply_color_lut`` reads a big-endian file's LUT data as little-endian,
and a fixed 8-bit shift of its 16-bit result then turns every pixel black. medlens applies the palette
itself: the LUT entries are read in the byte order the file was written in, their scale is taken from the
descriptor's bits *and* the values the LUT holds (DICOM allows 8-bit entries padded into 16 bits), and a LUT
that cannot be made right (8-bit entries holding values above 255, fewer entries than declared, a scaling
that would flatten a varying LUT) is refused instead of read as a wrong image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medlens.errors import UnreadableImageError

_CHANNELS = ("Red", "Green", "Blue")


def apply_palette(ds, arr: np.ndarray, path: str | Path) -> np.ndarray:
    """Map PALETTE COLOR indices to RGB uint8 (H, W, 3) with the file's own LUTs.

    Raises:
        UnreadableImageError: missing or inconsistent LUTs, or LUT values that no 8-bit scale fits.
    """
    if f"{_CHANNELS[0]}PaletteColorLookupTableDescriptor" not in ds:
        raise UnreadableImageError(str(path), "PALETTE COLOR image without its palette (no LUT descriptor)")
    if all(f"{c}PaletteColorLookupTableData" in ds for c in _CHANNELS):
        luts = [_lut(ds, c, path) for c in _CHANNELS]
        first = _descriptor(ds, _CHANNELS[0], path)[1]
    else:  # segmented LUTs: pydicom expands them in the file's byte order
        luts, first = _segmented_luts(ds, path), 0
    if len({len(lut) for lut in luts}) > 1:
        raise UnreadableImageError(str(path), "palette LUTs of different lengths; cannot colour the image")
    index = np.clip(np.asarray(arr).astype(np.int64) - int(first), 0, len(luts[0]) - 1)
    return np.stack([lut[index] for lut in luts], axis=-1)


def _descriptor(ds, colour: str, path) -> tuple[int, int, int]:
    try:
        entries, first, bits = (int(v) for v in ds[f"{colour}PaletteColorLookupTableDescriptor"].value)
    except (TypeError, ValueError) as err:
        raise UnreadableImageError(
            str(path), f"malformed {colour}PaletteColorLookupTableDescriptor (expected 3 numbers)"
        ) from err
    return entries or 65536, first, bits  # 0 entries means 2^16


def _lut(ds, colour: str, path) -> np.ndarray:
    """One channel's LUT as uint8, read in the file's byte order and scaled by its bits and values."""
    entries, _, bits = _descriptor(ds, colour, path)
    data = bytes(ds[f"{colour}PaletteColorLookupTableData"].value or b"")
    if len(data) >= 2 * entries:
        order = "<" if _little_endian(ds) else ">"
        values = np.frombuffer(data[: 2 * entries], dtype=f"{order}u2")
    elif len(data) >= entries:
        values = np.frombuffer(data[:entries], dtype=np.uint8)
    else:
        raise UnreadableImageError(
            str(path),
            f"the {colour.lower()} palette LUT holds {len(data)} bytes for the {entries} entries its "
            "descriptor declares",
        )
    return to_8bit(values, bits, f"{colour.lower()} palette LUT", path)


def to_8bit(values: np.ndarray, bits: int, what: str, path) -> np.ndarray:
    """Scale LUT entries to uint8 from the declared bits and the values actually held.

    16-bit entries whose values all fit in 8 bits are 8-bit entries padded into 16 bits (which DICOM
    allows) and are kept; 16-bit entries above 255 keep their top 8 bits.

    Raises:
        UnreadableImageError: a bit depth other than 8 or 16, 8-bit entries above 255, or a scale that would
            turn a varying LUT into a constant one.
    """
    values = np.asarray(values).astype(np.int64)
    top = int(values.max()) if values.size else 0
    if bits not in (8, 16) or values.min(initial=0) < 0:
        raise UnreadableImageError(str(path), f"{what} declares {bits}-bit entries; only 8 or 16 are valid")
    if bits == 8 and top > 255:
        raise UnreadableImageError(
            str(path), f"{what} declares 8-bit entries but holds values up to {top}; cannot scale it"
        )
    scaled = (values >> 8 if top > 255 else values).astype(np.uint8)
    if np.ptp(values) > 0 and np.ptp(scaled) == 0:
        raise UnreadableImageError(
            str(path), f"{what} would lose all its contrast in 8 bits; cannot scale it"
        )
    return scaled


def _segmented_luts(ds, path) -> list[np.ndarray]:
    from pydicom.pixels import apply_color_lut  # deferred: optional heavy dependency

    entries, _, bits = _descriptor(ds, _CHANNELS[0], path)
    expanded = np.asarray(apply_color_lut(np.arange(entries), ds))  # the LUT itself, one row per index
    return [to_8bit(expanded[:, i], bits, "segmented palette LUT", path) for i in range(3)]


def _little_endian(ds) -> bool:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is not None and getattr(syntax, "is_transfer_syntax", False):
        return bool(syntax.is_little_endian)
    little = getattr(ds, "original_encoding", (None, None))[1]
    return little is not False


def decoder_failure(ds, err: BaseException, path: str | Path, hint: str) -> UnreadableImageError:
    """The one line for compressed pixel data that pydicom could not decode, saying what really happened.

    No decoder for the syntax at all, no installed plugin for it (with what to install), or installed
    decoders that failed on this file (with each one's reason).
    """
    # deferred: optional heavy dependency
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID")
    name = getattr(syntax, "name", str(syntax))
    prefix = f"pixel data compressed as {name}"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return UnreadableImageError(
            str(path),
            f"{prefix}, which medlens cannot decode (pydicom has no decoder for it); export the image "
            "uncompressed or as JPEG / JPEG 2000",
        )
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or hint
        return UnreadableImageError(str(path), f"{prefix}, which no installed decoder reads ({missing})")
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]  # one line per plugin
    reasons = "; ".join(lines) if lines else (text.splitlines()[0] if text else type(err).__name__)
    return UnreadableImageError(
        str(path),
        f"{prefix}; the installed decoders failed on it (damaged data?): re-export it uncompressed if "
        f"another viewer opens it ({reasons[:400]})",
        kind="undecodable",
    )
