"""Segmentation sources → :class:`~medlens.data.manifest.Manifest` with ``image`` and ``mask`` columns.

Four layouts, each a ``detect_X(path) -> bool`` plus ``load_X(path, **opts) -> Manifest`` (registered by
the ingest registry through :data:`SOURCES`):

- ``kaggle_3m``: ``<patient>/<patient>_<n>.tif`` + ``<patient>_<n>_mask.tif`` (Buda et al. LGG); one row
  per slice with ``slice_index``, slices ordered by n, ``patient_id`` = folder name, and ``data.csv``'s
  per-patient columns merged in when present.
- ``pairs_csv``: a CSV with ``image`` and ``mask`` columns (plus optional ``patient_id``, ``case_id``,
  ``split`` and metadata); paths relative to the CSV.
- ``nifti_folders``: ``imagesTr``/``labelsTr`` (or ``images``/``labels``, ``image``/``label``,
  ``images``/``masks``) with image and label matched by file name (nnU-Net's ``_0000`` channel suffix is
  understood for single-channel images).
- ``msd``: a Medical Segmentation Decathlon ``dataset.json`` whose ``training`` list holds
  ``{"image": ..., "label": ...}``.

Paths in the manifest are relative to its root. Masks are checked pair by pair with :func:`check_pair`
(at load time with ``validate=True``, otherwise when a dataset reads the case).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest
from medlens.data.seg_checks import RESERVED, _finish, _stem, check_pair, validate_pairs
from medlens.data.seg_kaggle import KAGGLE_MASK, KAGGLE_SLICE, detect_kaggle_3m, load_kaggle_3m
from medlens.data.seg_nifti import (
    FOLDER_PAIRS,
    NIFTI,
    detect_msd,
    detect_nifti_folders,
    load_msd,
    load_nifti_folders,
    msd_info,
)
from medlens.errors import MedlensError
from medlens.io.guard import read_table

__all__ = [
    "FOLDER_PAIRS",
    "KAGGLE_MASK",
    "KAGGLE_SLICE",
    "NIFTI",
    "RESERVED",
    "SOURCES",
    "check_pair",
    "detect_kaggle_3m",
    "detect_msd",
    "detect_nifti_folders",
    "detect_pairs_csv",
    "load_kaggle_3m",
    "load_msd",
    "load_nifti_folders",
    "load_pairs_csv",
    "msd_info",
    "validate_pairs",
]


# -- CSV of pairs --------------------------------------------------------------------------------------
def detect_pairs_csv(path: str | Path) -> bool:
    """True for a CSV whose header has ``image`` and ``mask`` columns."""
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() == ".csv"):
        return False
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return False
    return {"image", "mask"} <= {c.strip().lower() for c in header}


def load_pairs_csv(path: str | Path, **opts: Any) -> Manifest:
    """Manifest from a CSV with ``image`` and ``mask`` columns (paths relative to the CSV's folder).

    Optional columns ``case_id``, ``patient_id``, ``split`` and any metadata are kept.

    Raises:
        MedlensError: missing columns, or an image or mask file that does not exist, naming the case.
    """
    path = Path(path)
    df = read_table(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip().lower() if c.strip().lower() in RESERVED else c.strip() for c in df.columns]
    missing = [c for c in ("image", "mask") if c not in df.columns]
    if missing:
        raise MedlensError(
            f"{path} has no {' or '.join(missing)} column; a pairs CSV needs image,mask"
            f"[,patient_id] columns (it has {list(df.columns)})"
        )
    root = path.parent.resolve()
    if "case_id" not in df.columns or (df["case_id"] == "").any():
        df["case_id"] = [_stem(p) for p in df["image"]]
    for row in df.itertuples(index=False):
        for column in ("image", "mask"):
            value = getattr(row, column)
            if not value or not (root / value).is_file():
                raise MedlensError(
                    f"case {row.case_id}: {column} file {value or '(empty)'} listed in {path} "
                    "does not exist; fix the path (relative to the CSV's folder)"
                )
    return _finish(df, root, "image/mask CSV", path, opts)


#: name → (detect, load) for the ingest registry.
SOURCES: dict[str, tuple[Callable[[str | Path], bool], Callable[..., Manifest]]] = {
    "kaggle_3m": (detect_kaggle_3m, load_kaggle_3m),
    "pairs_csv": (detect_pairs_csv, load_pairs_csv),
    "nifti_folders": (detect_nifti_folders, load_nifti_folders),
    "msd": (detect_msd, load_msd),
}
