"""What the Service's parts share: NotFound, the check of a caller's row id, run names, and the
file helpers (a file inside a folder, a dataset zip's root, counting images)."""

from __future__ import annotations

import re
from pathlib import Path

from medlens.errors import MedlensError
from medlens.serving.params import MAX_ID

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class NotFound(MedlensError):
    """A row the caller named does not exist (HTTP 404)."""


def _id(value: int, what: str) -> int:
    """A row id from a caller (a page's form or path): a database integer, or NotFound."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise NotFound(f"{what} {value!r} does not exist") from None
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"{what} {value} does not exist")
    return value


def _inside(base: Path, name: str, what: str) -> Path:
    """``base / name`` when it is a file inside ``base`` (no traversal, no absolute names)."""
    base = base.resolve()
    if not name or "\x00" in name or name.startswith(("/", "\\")):
        raise NotFound(f"no such file in {what}")
    target = (base / name).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound(f"no such file in {what}")
    return target


def _data_root(folder: Path) -> Path:
    """The folder a dataset zip really holds: a single top-level folder is stepped into."""
    entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    while len(entries) == 1 and entries[0].is_dir():
        folder = entries[0]
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
    return folder


def _count_images(files: list[Path]) -> int:
    from medlens.io.images import is_image_file

    return sum(1 for f in files if is_image_file(f) or f.name.endswith((".nii", ".nii.gz", ".npz")))
