"""Zip archives (PyTorch checkpoints, npz caches) checked by their declared sizes before anything is inflated.

``torch.load`` and ``np.load`` allocate and inflate each record to the size the archive's central directory
declares. A crafted 2.4 MB model.pt whose one deflated record declares 2.5 GB costs 2.8 GB of memory before
any check of its contents could run; :func:`check_zip_inflation` reads only the directory and refuses it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from medlens.errors import MedlensError

MIB = 1024 * 1024
#: A zip archive may declare at most this many bytes once inflated (the size limit of a model file) ...
MAX_INFLATED_MB = 8192.0
#: ... and, above :data:`INFLATION_FLOOR_MB`, at most this many times its size on disk. ``torch.save`` stores
#: its records uncompressed (ratio 1) and float weights deflate by well under 2x, so a larger ratio is a
#: crafted archive.
MAX_INFLATION_RATIO = 16.0
INFLATION_FLOOR_MB = 64.0


def check_zip_inflation(
    path: str | Path,
    what: str,
    *,
    limit_mb: float = MAX_INFLATED_MB,
    max_ratio: float | None = MAX_INFLATION_RATIO,
) -> None:
    """Refuse a zip archive whose records declare more inflated bytes than any honest one holds.

    The central directory declares each record's uncompressed size; the readers (PyTorch's miniz, numpy's
    zipfile) allocate and inflate that much, so checking the declared total bounds the memory a file can
    cost. A file that is not a zip archive (PyTorch's legacy format, random bytes) is left to its reader,
    which refuses it with its own reason.

    Args:
        path: the archive.
        what: its name in the message ("model file").
        limit_mb: the most it may declare in all (default :data:`MAX_INFLATED_MB`).
        max_ratio: above :data:`INFLATION_FLOOR_MB`, the most it may declare per byte on disk (None: no ratio
            limit, for archives medlens deflates itself, whose ratio depends on their content).

    Raises:
        MedlensError: naming the file, its declared inflated size and the limit.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(max(0, info.file_size) for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a (readable) zip archive: the reader refuses it with its own reason
    on_disk = max(1, path.stat().st_size)
    limit = limit_mb * MIB
    if max_ratio is not None:
        limit = min(limit, max(INFLATION_FLOOR_MB * MIB, max_ratio * on_disk))
    if declared > limit:
        raise MedlensError(
            f"{what} {path} is {human_bytes(on_disk)} on disk but its zip records declare "
            f"{human_bytes(declared)} once inflated (more than the {human_bytes(limit)} an honest one of "
            "its size holds); refusing to inflate it: it is damaged or crafted, use the file that was saved"
        )


def human_bytes(n: float) -> str:
    """``n`` bytes as "1.5 GiB", "858.3 MiB", "12.0 KiB" or "70 bytes"."""
    for unit, size in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"
