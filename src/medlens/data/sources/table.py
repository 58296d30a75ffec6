"""A CSV of images: a manifest written by ``Manifest.save`` or any ``image,label[,...]`` table."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import NPZ_SEP, REQUIRED, Manifest
from medlens.data.sources import register_source
from medlens.data.sources.labels import name_labels
from medlens.errors import MedlensError
from medlens.io.guard import read_table

RESERVED = set(REQUIRED) | {"label"}
#: Column names people use for image paths, suggested when ``image`` is missing.
PATH_LIKE = (
    "path",
    "filepath",
    "file_path",
    "filename",
    "file_name",
    "file",
    "image_path",
    "img",
    "img_path",
)


@register_source("csv", priority=500, description="a CSV with image,label[,patient_id,split,...] columns")
class CsvTable:
    """A CSV with an ``image`` column (paths relative to the CSV's folder, or absolute) and ``label``."""

    def detect(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".csv"

    def load(self, path: Path, *, label_names: Sequence[str] | None = None, **options: Any) -> Manifest:
        """Read the CSV; extra columns (age, sex, site, ...) are kept as metadata.

        Rows whose image file is missing are kept (decoding reports and skips them later), but a CSV where
        no listed image exists is an error: its paths are almost certainly relative to another folder.

        Raises:
            MedlensError: unreadable CSV, no ``image`` column, no rows, or none of the images exists.
        """
        if options:
            raise MedlensError(f"unknown option {sorted(options)[0]!r} for a CSV source; use label_names")
        df = _read(path)
        root = path.parent.resolve()
        _check_files_exist(df["image"], root, path)
        if label_names is not None and "label" in df.columns:
            df["label"] = name_labels(df["label"], label_names, str(path))
        manifest = Manifest(df, root, source=f"CSV {path}")
        classes = f"{len(manifest.classes)} classes, " if manifest.has_labels else ""
        manifest.source = f"CSV: {path} ({classes}{len(manifest)} images)"
        return manifest


def _read(path: Path) -> pd.DataFrame:
    df = read_table(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    # Reserved names are matched case-insensitively ("Image", " label "); metadata columns keep their case.
    df.columns = [c.strip().lower() if c.strip().lower() in RESERVED else c.strip() for c in df.columns]
    if "image" not in df.columns:
        hint = next((f"; rename column {c!r} to 'image'" for c in df.columns if c.lower() in PATH_LIKE), "")
        raise MedlensError(
            f"CSV {path} has no 'image' column (columns: {', '.join(df.columns)}){hint}; "
            "an image CSV needs image,label columns with one image path per row"
        )
    df["image"] = df["image"].str.strip()
    if df.empty:
        raise MedlensError(f"CSV {path} has a header but no rows; add one row per image")
    blank = df.index[df["image"] == ""]
    if len(blank):
        raise MedlensError(
            f"CSV {path}: line {blank[0] + 2} has an empty image path; fill it in or delete the row"
        )
    return df


def _check_files_exist(images: pd.Series, root: Path, path: Path) -> None:
    def exists(cell: str) -> bool:
        file = cell.split(NPZ_SEP)[0]
        return os.path.exists(file if os.path.isabs(file) else os.path.join(root, file))

    for cell in images:
        if exists(cell):
            return
    raise MedlensError(
        f"none of the {len(images)} images listed in {path} exists (first: {images.iloc[0]}); "
        f"relative image paths are read from the CSV's folder {root}"
    )
