"""The kaggle_3m layout (Buda et al. LGG): ``<patient>/<patient>_<n>.tif`` slices beside their
``_mask.tif``, one manifest row per slice, with ``data.csv``'s per-patient columns merged in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest, natural_key
from medlens.data.seg_checks import RESERVED, _finish
from medlens.errors import MedlensError
from medlens.io.guard import read_table

KAGGLE_SLICE = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)\.tiff?$", re.IGNORECASE)
KAGGLE_MASK = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)_mask\.tiff?$", re.IGNORECASE)


def _kaggle_root(path: Path) -> Path:
    # Accept the dataset folder that holds kaggle_3m/ as well as kaggle_3m/ itself.
    return path / "kaggle_3m" if (path / "kaggle_3m").is_dir() else path


def detect_kaggle_3m(path: str | Path) -> bool:
    """True for a folder of patient folders holding ``*_<n>_mask.tif`` files."""
    root = Path(path)
    if not root.is_dir():
        return False
    root = _kaggle_root(root)
    for sub in sorted(p for p in root.iterdir() if p.is_dir())[:5]:
        if any(KAGGLE_MASK.match(f.name) for f in sub.iterdir()):
            return True
    return False


def load_kaggle_3m(path: str | Path, **opts: Any) -> Manifest:
    """Manifest of the kaggle_3m layout: one row per slice, ordered by patient then slice number.

    Args:
        path: the ``kaggle_3m`` folder (or its parent).
        **opts: ``validate`` (read and check every pair), ``num_classes``.

    Raises:
        MedlensError: a slice without its mask (or a mask without its slice), naming the case.
    """
    root = _kaggle_root(Path(path))
    if not root.is_dir():
        raise MedlensError(f"kaggle_3m folder {path} does not exist")
    rows = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        rows += _kaggle_patient(root, folder)
    df = pd.DataFrame(rows, columns=["case_id", "patient_id", "split", "image", "mask", "slice_index"])
    df = _merge_patient_csv(df, root / "data.csv")
    return _finish(df, root, "kaggle_3m slices", root, opts)


def _kaggle_patient(root: Path, folder: Path) -> list[dict]:
    images, masks = {}, {}
    for f in folder.iterdir():
        if (m := KAGGLE_MASK.match(f.name)) is not None:
            masks[int(m["n"])] = f
        elif (m := KAGGLE_SLICE.match(f.name)) is not None:
            images[int(m["n"])] = f
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise MedlensError(
            f"case {folder.name}_{orphans[0]}: mask {masks[orphans[0]]} has no image "
            "beside it; add the image or remove the mask"
        )
    rows = []
    for n in sorted(images):
        case_id = images[n].name.rsplit(".", 1)[0]
        if n not in masks:
            raise MedlensError(
                f"case {case_id}: mask {folder / (case_id + '_mask.tif')} is missing; "
                "every slice needs its _mask.tif (an empty mask for slices without tumour)"
            )
        rows.append(
            {
                "case_id": case_id,
                "patient_id": folder.name,
                "split": "",
                "image": images[n].relative_to(root).as_posix(),
                "mask": masks[n].relative_to(root).as_posix(),
                "slice_index": n,
            }
        )
    return rows


def _merge_patient_csv(df: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """Add data.csv's per-patient columns; its ``Patient`` ids may be a prefix of the folder names."""
    if not csv.is_file() or df.empty:
        return df
    meta = read_table(csv, dtype=str, keep_default_na=False)
    key = next((c for c in meta.columns if c.lower() in ("patient", "patient_id")), None)
    if key is None:
        return df
    ids = meta[key].astype(str).tolist()
    # TCGA folder names add the scan date: TCGA_CS_4941_19960909 belongs to patient TCGA_CS_4941.
    match = {
        p: next((i for i in ids if p == i or p.startswith(i + "_")), None) for p in df["patient_id"].unique()
    }
    meta = meta.rename(columns={c: f"{c}_meta" for c in meta.columns if c in RESERVED})
    meta = meta.drop_duplicates(subset=[key]).set_index(key)
    extra = meta.reindex([match[p] for p in df["patient_id"]]).reset_index(drop=True)
    return pd.concat([df.reset_index(drop=True), extra.fillna("")], axis=1)
