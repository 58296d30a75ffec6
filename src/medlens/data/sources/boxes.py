"""A CSV of boxes for detection: ``image,x0,y0,x1,y1[,patient_id,split,...]`` (pixels of each image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest
from medlens.data.sources import register_source
from medlens.data.sources.table import _check_files_exist, _read
from medlens.errors import MedlensError

BOX_COLUMNS = ("x0", "y0", "x1", "y1")


@register_source("boxes_csv", priority=45, description="a CSV with image,x0,y0,x1,y1 columns (detection)")
class BoxesCsv:
    """One box per image, x along columns and y along rows, in pixel-edge coordinates (x1, y1 exclusive)."""

    def detect(self, path: Path) -> bool:
        if not (path.is_file() and path.suffix.lower() == ".csv"):
            return False
        try:
            header = {c.strip().lower() for c in pd.read_csv(path, nrows=0).columns}
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            return False
        return {"image", *BOX_COLUMNS} <= header and "mask" not in header

    def load(self, path: Path, **options: Any) -> Manifest:
        """Read the CSV; a box cell that is not a number is an error naming the case (blank = no box).

        Raises:
            MedlensError: unreadable CSV, no images found, or a non-numeric box value.
        """
        if options:
            raise MedlensError(f"unknown option {sorted(options)[0]!r} for a boxes CSV; it takes none")
        df = _read(path)
        df.columns = [c.lower() if c.lower() in BOX_COLUMNS else c for c in df.columns]
        root = path.parent.resolve()
        _check_files_exist(df["image"], root, path)
        for column in BOX_COLUMNS:
            values = pd.to_numeric(df[column].replace("", None), errors="coerce")
            bad = values.isna() & (df[column].str.strip() != "")
            if bad.any():
                row = df.loc[bad].iloc[0]
                raise MedlensError(
                    f"{path}: box value {column}={row[column]!r} of image {row['image']} is not a "
                    "number; boxes are x0,y0,x1,y1 in pixels"
                )
            df[column] = values
        return Manifest(df, root, source=f"boxes CSV: {path} ({len(df)} images)")
