"""Segmentation layouts (kaggle_3m, pairs CSV, NIfTI folders, MSD) from :mod:`medlens.data.seg_sources`.

They sit before the catch-all CSV and folder kinds: a kaggle_3m tree would otherwise pass for class
folders, and a pairs CSV for an image,label CSV.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medlens.data.manifest import Manifest
from medlens.data.seg_sources import SOURCES
from medlens.data.sources import register_source

_PRIORITY = {"msd": 10, "nifti_folders": 20, "kaggle_3m": 30, "pairs_csv": 40}
_DESCRIPTION = {
    "kaggle_3m": "image/mask slice pairs <root>/<patient>/<patient>_<n>[_mask].tif",
    "pairs_csv": "a CSV with image,mask columns",
    "nifti_folders": "NIfTI imagesTr/labelsTr (or images/labels) folders",
    "msd": "a Medical Segmentation Decathlon dataset.json",
}


def _adapter(detect: Callable[[Path], bool], load: Callable[..., Manifest]) -> type:
    class SegmentationSource:
        def detect(self, path: Path) -> bool:
            return bool(detect(path))

        def load(self, path: Path, **options: Any) -> Manifest:
            return load(path, **options)

    return SegmentationSource


def _register() -> None:
    for name, (detect, load) in SOURCES.items():
        register_source(name, priority=_PRIORITY.get(name, 50), description=_DESCRIPTION.get(name, ""))(
            _adapter(detect, load)
        )


_register()
