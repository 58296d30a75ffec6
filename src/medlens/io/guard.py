"""The one guard every reader goes through: size limits before decoding, finite values, one reason each.

Every file medlens opens (raster images, DICOM files and series, NIfTI volumes, npz arrays, CSV tables and
model checkpoints) is checked here, so that a hostile or broken file costs neither memory nor a traceback:

- **Declared size first.** A reader asks :func:`check_declared` with the size the file's header declares
  (width × height × frames × channels × bytes per sample; Rows × Columns × NumberOfFrames for DICOM; dims ×
  dtype for NIfTI and npz) *before* it decodes anything. Above the limit (512 MiB decoded per file by default;
  ``--max-image-mb`` on the command line, :func:`image_limit` or ``max_image_mb=`` in Python) the file is
  refused with its declared size. A 70-byte PNG that declares 40 000 × 40 000 pixels costs nothing.
- **Bounded decompression.** Pillow decodes into a buffer of the declared size (libtiff and zlib stop at its
  end). tifffile without ``imagecodecs`` would inflate a deflate strip with an unbounded ``zlib.decompress``;
  :func:`install_bounded_tiff_codecs` replaces that decoder by one that stops at the strip's declared size.
- **Finite values only.** An image or volume holding NaN or ±inf is *rejected* (reported and skipped inside a
  dataset), never silently decoded as black or trained to NaN weights: there is no value medlens could put in
  its place that would not change what the model learns. :func:`check_finite` counts them for the message.
- **One reason per failure.** :class:`~medlens.errors.UnreadableImageError` carries a reason (one line) and a
  short ``kind`` (``truncated``, ``too-large``, ``non-finite``, ...), which :func:`skipped_summary` turns into
  the one terminal line a dataset command prints ("skipped 6 of 180 files: 2 truncated, ...").
"""

from __future__ import annotations

import contextlib
import functools
import math
import pickle
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from medlens.errors import MedlensError, UnreadableImageError, reason_kind
from medlens.io.archives import check_zip_inflation, human_bytes

DEFAULT_MAX_IMAGE_MB = 512.0
#: A CSV or model file larger than this is refused before it is parsed (a manifest of a million rows is ~100
#: MB).
MAX_TABLE_MB = 2048.0
MAX_CHECKPOINT_MB = 8192.0
MIB = 1024 * 1024

_LOCK = threading.Lock()
# A module-level setting rather than a context variable: the readers run in worker threads, which do not
# inherit context variables.
_limit_bytes = int(DEFAULT_MAX_IMAGE_MB * MIB)


def set_max_image_mb(mb: float | None) -> None:
    """Set the decoded-size limit per file in MiB (None restores the 512 MiB default)."""
    global _limit_bytes
    value = DEFAULT_MAX_IMAGE_MB if mb is None else _checked_mb(mb)
    with _LOCK:
        _limit_bytes = int(value * MIB)


@contextlib.contextmanager
def image_limit(mb: float | None) -> Iterator[None]:
    """Use a decoded-size limit of ``mb`` MiB per file inside the block (None keeps the current one)."""
    if mb is None:
        yield
        return
    previous = _limit_bytes
    set_max_image_mb(mb)
    try:
        yield
    finally:
        set_max_image_mb(previous / MIB)


def _checked_mb(mb: Any) -> float:
    try:
        value = float(mb)
    except (TypeError, ValueError) as err:
        raise MedlensError(f"--max-image-mb must be a number of MiB, got {mb!r}") from err
    if not (math.isfinite(value) and value > 0):
        raise MedlensError(f"--max-image-mb must be a positive number of MiB, got {mb!r}")
    return value


def check_declared(
    path: str | Path, shape: tuple[int, ...], bytes_per_sample: float, *, what: str = "image"
) -> None:
    """Refuse a file whose header declares more than the decoded-size limit, before decoding it.

    Args:
        path: the file (named in the reason).
        shape: declared dimensions, e.g. (frames, height, width, channels).
        bytes_per_sample: bytes one value takes once decoded.
        what: "image" or "volume", for the message.

    Raises:
        UnreadableImageError: kind ``too-large`` (or ``undecodable`` for a negative or zero dimension).
    """
    dims = [int(d) for d in shape]
    if any(d <= 0 for d in dims):
        raise UnreadableImageError(
            str(path), f"the header declares an empty {what} of shape {tuple(dims)}", kind="undecodable"
        )
    n_bytes = math.prod(dims) * float(bytes_per_sample)
    if n_bytes > _limit_bytes:
        text = " × ".join(str(d) for d in dims)
        raise UnreadableImageError(
            str(path),
            f"declares a {text} {what} ({human_bytes(n_bytes)} decoded), above the "
            f"{_limit_bytes / MIB:g} MiB limit per file; if it is genuine, raise --max-image-mb",
            kind="too-large",
            declared_bytes=n_bytes,
        )


def check_finite(path: str | Path, array: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Return ``array`` unchanged if every value is finite; refuse it otherwise (kind ``non-finite``)."""
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.complexfloating):
        return a
    finite = np.isfinite(a)
    if finite.all():
        return a
    n_bad = int(a.size - np.count_nonzero(finite))
    raise UnreadableImageError(
        str(path),
        f"the {what} holds {n_bad:,} NaN/inf values of {a.size:,}; "
        "medlens does not invent values for them: fix the file or drop it",
        kind="non-finite",
    )


def check_file_size(path: str | Path, limit_mb: float, what: str) -> None:
    """Refuse a table or model file larger than ``limit_mb`` before parsing it."""
    size = Path(path).stat().st_size
    if size > limit_mb * MIB:
        raise MedlensError(
            f"{path} is {human_bytes(size)}, larger than any {what} medlens expects "
            f"({limit_mb:g} MiB); check that it is the right file"
        )


# ---------------------------------------------------------------------------------------------------------
# Bounded TIFF deflate
# ---------------------------------------------------------------------------------------------------------


def _bounded_zlib_decode(data: bytes, /, *, out: Any = None) -> bytes:
    """zlib inflate that never produces more than the strip's declared size (``out`` bytes)."""
    if not isinstance(out, int) or out <= 0:
        out = _limit_bytes
    d = zlib.decompressobj()
    result = d.decompress(bytes(data), out)
    return result


def install_bounded_tiff_codecs() -> None:
    """Make tifffile inflate deflate strips with :func:`_bounded_zlib_decode` (when imagecodecs is absent).

    tifffile's fallback decoder calls ``zlib.decompress`` on a strip, which a 1.5 MB strip can expand to
    gigabytes. The codec table is tifffile's private mapping, so this is best effort: if its shape changes,
    the declared-size check still bounds every honest file.
    """
    try:
        codecs = tifffile.TIFF.DECOMPRESSORS._codecs  # private, see the docstring
        try:
            # deferred: a probe for an optional package (its decoders honour the output size themselves)
            import imagecodecs  # noqa: F401

            return
        except ImportError:
            pass
        for code in (8, 32946, 50013):  # Adobe deflate, old-style deflate, PixTIFF deflate
            codecs[code] = _bounded_zlib_decode
    except (AttributeError, TypeError):
        return


# ---------------------------------------------------------------------------------------------------------
# Reporting skipped files
# ---------------------------------------------------------------------------------------------------------

KIND_LABELS = {
    "too-large": "too large",
    "non-finite": "with NaN/inf",
    "zero-byte": "empty (0 bytes)",
    "truncated": "truncated",
    "missing": "missing",
    "non-image": "not images",
    "undecodable": "undecodable",
    "bad-mask": "with a bad mask",
    "bad-box": "with a box outside the image",
    "bad-shape": "of the wrong shape",
}


def skipped_summary(skipped: list[dict], total: int, where: str, noun: str = "files") -> str:
    """One line for the terminal: "skipped 6 of 180 files: 2 truncated, 1 too large (declares 1.6 Gpx), ...".

    Args:
        skipped: the ``{"path", "reason", "kind"}`` records a command collected.
        total: how many files it tried.
        where: the file holding the full list ("train.json").
        noun: "files", "cases", ...
    """
    kinds = Counter(s.get("kind") or reason_kind(s.get("reason", "")) for s in skipped)
    parts = [f"{n} {KIND_LABELS.get(k, k)}" for k, n in kinds.most_common()]
    return f"skipped {len(skipped)} of {total} {noun}: {', '.join(parts)} — see {where}"


def skipped_lines(
    skipped: list[dict], total: int, where: str, *, limit: int = 10, notes: list[dict] | None = None
) -> list[str]:
    """The terminal report of a dataset command: the summary line, then the first ``limit`` files by name.

    Args:
        skipped: ``{"path", "reason", "kind"}`` records.
        total: files tried.
        where: the file holding the full list.
        limit: how many files to name before "+N more".
        notes: ``{"path", "note"}`` records of files read with a caveat (first page of a multi-page TIFF).
    """
    lines = []
    if skipped:
        lines.append(skipped_summary(skipped, total, where))
        lines += [f"  {s.get('path', '?')}: {s.get('reason', '')}" for s in skipped[:limit]]
        if len(skipped) > limit:
            lines.append(f"  +{len(skipped) - limit} more (see {where})")
    if notes:
        lines.append(f"read {len(notes)} file(s) with a caveat — see {where}:")
        lines += [f"  {n.get('path', '?')}: {n.get('note', '')}" for n in notes[:limit]]
        if len(notes) > limit:
            lines.append(f"  +{len(notes) - limit} more")
    return lines


#: Words of decoder messages that mean the file ends early; each reader adds its library's own wording.
TRUNCATION_MARKERS = ("truncat", "unexpected end", "end of file", "end of stream")


def looks_truncated(text: str, extra: tuple[str, ...] = ()) -> bool:
    """True when a decoder's message says the data ends before the header's promise."""
    low = text.lower()
    return any(k in low for k in (*TRUNCATION_MARKERS, *extra))


def failure_reason(err: BaseException, extra: tuple[str, ...] = ()) -> str:
    """One line for a decoder failure: "truncated file (...)" when it is one, else its first line."""
    text = first_line(err)
    if isinstance(err, EOFError) or looks_truncated(text, extra):
        return f"truncated file ({text})"
    return text


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


# ---------------------------------------------------------------------------------------------------------
# Tables and model files
# ---------------------------------------------------------------------------------------------------------


def load_torch_file(path: str | Path, what: str = "model file") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors: never unpickles code, never a traceback.

    Raises:
        MedlensError: missing, too large, not a PyTorch file (random bytes, truncated zip), or holding Python
            objects other than tensors and plain values.
    """

    import torch  # deferred: heavy; medlens.io must not load torch for ingest/audit

    path = Path(path)
    if not path.is_file():
        raise MedlensError(f"{what} {path} does not exist")
    check_file_size(path, MAX_CHECKPOINT_MB, what)
    check_zip_inflation(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Unsupported global" in text or "GLOBAL" in text or "not an allowed global" in text:
            raise MedlensError(
                f"{what} {path} holds Python objects other than tensors and plain values; "
                "medlens loads weights only and never runs pickled code: save a state dict "
                "with torch.save(model.state_dict(), path)"
            ) from err
        raise MedlensError(
            f"{what} {path} is not a readable PyTorch state dict (foreign or corrupted bytes: "
            f"{_pickle_reason(text)}); save one with torch.save(model.state_dict(), path)"
        ) from err
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        zipfile.BadZipFile,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
    ) as err:
        raise MedlensError(
            f"{what} {path} is not a readable PyTorch state dict (truncated or corrupted: {first_line(err)})"
        ) from err


def _pickle_reason(text: str) -> str:
    """The useful line of PyTorch's multi-line weights_only message ("Unsupported operand 110")."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        low = ln.lower()
        if low.startswith(("unsupported", "invalid load key", "pickle data was truncated")):
            return ln.rstrip(".")
    return "unknown format"


def read_table(path: str | Path, **kwargs: Any):
    """``pandas.read_csv`` with one-line errors for a binary, empty, oversized or malformed file.

    Raises:
        MedlensError: naming the file and what to do.
    """
    import pandas as pd  # deferred: ~0.2 s; reading images through medlens.io does not need it

    path = Path(path)
    if not path.is_file():
        raise MedlensError(f"CSV file {path} does not exist")
    check_file_size(path, MAX_TABLE_MB, "CSV table")
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if b"\0" in head:
        raise MedlensError(
            f"{path} is not a text CSV file (it holds binary data); give a comma-separated table"
        )
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError as err:
        raise MedlensError(
            f"{path} is empty; it needs a header row (e.g. image,label) and one row per image"
        ) from err
    except UnicodeDecodeError as err:
        raise MedlensError(f"{path} is not UTF-8 text ({first_line(err)}); save the CSV as UTF-8") from err
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise MedlensError(
            f"cannot parse the CSV {path}: {first_line(err)}; check its quoting and columns"
        ) from err


def accepts_image_limit(fn):
    """Give a public function a ``max_image_mb=`` keyword that sets the decoded-size limit while it runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, max_image_mb: float | None = None, **kwargs: Any) -> Any:
        with image_limit(max_image_mb):
            return fn(*args, **kwargs)

    return wrapper
