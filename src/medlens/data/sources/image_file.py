"""A single image file: a one-row manifest without labels (enough to predict on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest
from medlens.data.sources import register_source
from medlens.data.sources.folders import case_id_of
from medlens.errors import MedlensError
from medlens.io.dicom import non_image_dicom
from medlens.io.images import RASTER_SUFFIXES, is_image_file


@register_source("image", priority=800, description="one image file (PNG, JPEG, TIFF, DICOM, ...)")
class ImageFile:
    """One image file (raster or single-frame DICOM); no label."""

    def detect(self, path: Path) -> bool:
        return path.is_file() and is_image_file(path)

    def load(self, path: Path, **options: Any) -> Manifest:
        """A one-row manifest whose root is the image's folder."""
        options.pop("label_names", None)  # a lone image has no label to name
        if options:
            raise MedlensError(f"unknown option {sorted(options)[0]!r} for a single image source")
        path = path.resolve()
        reason = non_image_dicom(path) if path.suffix.lower() not in RASTER_SUFFIXES else None
        if reason is not None:
            raise MedlensError(f"{path} holds no image: {reason}; give an image file or a folder of images")
        case = case_id_of(path.name)
        df = pd.DataFrame({"case_id": [case], "patient_id": [case], "split": [""], "image": [path.name]})
        return Manifest(df, path.parent, source=f"image file: {path}")
