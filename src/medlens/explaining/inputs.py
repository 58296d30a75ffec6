"""What `medlens explain` and `medlens triage` accept: image files, folders of them (searched recursively),
DICOM files or series folders, NIfTI volumes, or a manifest / CSV with study metadata.

Each input becomes a :class:`Study`: the path as the user gave it (``input``, the key of every output row),
the file to read, and the metadata columns a manifest row carried (patient_id, study_time, label, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import NPZ_SEP, Manifest, natural_key
from medlens.data.seg_sources import KAGGLE_MASK
from medlens.errors import MedlensError
from medlens.io.guard import read_table
from medlens.io.images import is_dicom_file, is_image_file
from medlens.io.volumes import is_nifti_file

#: Manifest columns that are not metadata (``mask`` is kept, resolved, as the ground truth of a simulation).
_NOT_METADATA = {"image"}


@dataclass
class Study:
    """One input to explain or triage."""

    input: str  # the path as given (or as found under a given folder), the row's key
    path: str  # what to read (a file, a DICOM series folder, or an npz entry)
    meta: dict[str, Any] = field(default_factory=dict)  # the manifest row's other columns


def expand_inputs(inputs: list[str | Path], spatial_dims: int = 2) -> list[Study]:
    """The studies behind ``inputs``, in the order given (a folder's files in natural order).

    A folder holding DICOM files directly is one series for a 3D model, and a folder of images for a 2D one.
    A ``.csv`` is a manifest (an ``image`` column, or what ``medlens ingest`` writes) whose other columns
    become metadata. Missing paths are kept as studies (they will be reported unreadable, never dropped).
    """
    if not inputs:
        raise MedlensError("no inputs given; pass image files, folders, NIfTI volumes or a manifest CSV")
    studies: list[Study] = []
    for item in inputs:
        p = Path(item)
        if p.is_file() and p.suffix.lower() == ".csv":
            studies += _manifest_studies(p)
        elif p.is_dir():
            studies += _folder_studies(p, spatial_dims)
        else:
            studies.append(Study(str(item), str(p)))
    if not studies:
        raise MedlensError(f"found no images in {', '.join(map(str, inputs))}")
    return studies


def _folder_studies(folder: Path, spatial_dims: int) -> list[Study]:
    files = sorted((f for f in folder.rglob("*") if f.is_file()), key=lambda f: natural_key(str(f)))
    if spatial_dims == 3:
        out, series = [], set()
        for f in files:
            if is_nifti_file(f):
                out.append(Study(str(f), str(f)))
            elif f.parent not in series and is_dicom_file(f):
                series.add(f.parent)
                out.append(Study(str(f.parent), str(f.parent)))
        return out
    # a kaggle_3m-style folder holds the masks beside the slices: they are ground truth, not studies
    return [Study(str(f), str(f)) for f in files if is_image_file(f) and not KAGGLE_MASK.match(f.name)]


def _manifest_studies(path: Path) -> list[Study]:
    df = read_table(path)
    if "image" not in df.columns:
        raise MedlensError(
            f"manifest {path} has no 'image' column (it has {list(df.columns)}); give one path per row"
        )
    manifest = Manifest(df, root=path.parent, source=str(path))
    rows = manifest.df
    meta_cols = [c for c in rows.columns if c not in _NOT_METADATA]
    studies = []
    for image, resolved, meta in zip(
        rows["image"].astype(str), manifest.paths(), rows[meta_cols].to_dict("records")
    ):
        clean = {k: (None if _missing(v) else v) for k, v in meta.items()}
        if clean.get("mask") is not None:
            clean["mask"] = manifest.resolve(str(clean["mask"]))
        shown = image if NPZ_SEP in image else os.path.normpath(resolved)
        studies.append(Study(shown, str(resolved), clean))
    return studies


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
