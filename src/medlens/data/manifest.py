"""The manifest: one row per case, saved as CSV.

Columns: ``case_id``, ``patient_id`` (defaults to case_id), ``split`` (train/val/test or empty), ``image``
(a path relative to the manifest's root, an absolute path, or ``file.npz::key[index]`` for arrays inside an
npz file), the target ``label``, and any metadata columns (age, sex, site, ...).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medlens.errors import MedlensError
from medlens.io.guard import read_table

REQUIRED = ("case_id", "patient_id", "split", "image")
SPLITS = ("train", "val", "test", "")
NPZ_SEP = "::"


def natural_key(value: str) -> tuple:
    """Sort key that orders "2" before "10" and "class2" before "class10"."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(value)))


def grouped_patients(patient_ids) -> np.ndarray | None:
    """The patient id of every case as strings when some patient has several cases (slices, views), else
    None (every case its own patient). Grouped cases are resampled, split and moved by patient."""
    patients = np.asarray(pd.Series(patient_ids).astype(str))
    return patients if len(set(patients)) < len(patients) else None


@dataclass
class Manifest:
    """A table of cases plus the folder its relative paths start from.

    Attributes:
        df: one row per case with at least ``case_id``, ``patient_id``, ``split``, ``image``.
        root: folder that relative ``image`` paths are resolved against.
        source: human-readable description of where the cases came from.
    """

    df: pd.DataFrame
    root: Path
    source: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        df = self.df.copy()
        if "image" not in df.columns:
            raise MedlensError(f"manifest from {self.source or self.root} has no 'image' column")
        if "case_id" not in df.columns:
            df["case_id"] = [Path(str(p).split(NPZ_SEP)[-1]).stem for p in df["image"]]
        if df["case_id"].duplicated().any():
            df["case_id"] = [
                f"{c}-{i}" if d else c
                for i, (c, d) in enumerate(zip(df["case_id"], df["case_id"].duplicated(keep=False)))
            ]
        if "patient_id" not in df.columns:
            df["patient_id"] = df["case_id"]
        df["patient_id"] = df["patient_id"].fillna(df["case_id"]).astype(str)
        if "split" not in df.columns:
            df["split"] = ""
        df["split"] = df["split"].fillna("").astype(str).str.strip().str.lower()
        df["split"] = df["split"].replace(
            {"training": "train", "validation": "val", "valid": "val", "testing": "test"}
        )
        bad = sorted(set(df["split"]) - set(SPLITS))
        if bad:
            raise MedlensError(
                f"unknown split value(s) {bad} in {self.source or 'manifest'}; "
                "use train, val, test or leave empty"
            )
        if "label" in df.columns:
            df["label"] = df["label"].astype(str).str.strip()
        df["case_id"] = df["case_id"].astype(str)
        first = [c for c in (*REQUIRED, "label") if c in df.columns]
        self.df = df[first + [c for c in df.columns if c not in first]].reset_index(drop=True)

    # -- queries --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.df)

    @property
    def has_labels(self) -> bool:
        return "label" in self.df.columns

    @property
    def classes(self) -> list[str]:
        """Class names in model-output order (natural sort of the label values)."""
        if not self.has_labels:
            return []
        return sorted(self.df["label"].unique(), key=natural_key)

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if s and (self.df["split"] == s).any()]

    def resolve(self, image: str) -> str:
        """Absolute path (or npz reference) for one ``image`` cell."""
        path, sep, key = str(image).partition(NPZ_SEP)
        p = Path(path)
        full = p if p.is_absolute() else self.root / p
        return f"{full}{sep}{key}"

    def paths(self) -> list[str]:
        return [self.resolve(p) for p in self.df["image"]]

    def subset(self, split: str | list[str] | None = None, mask=None) -> Manifest:
        """Cases of one split (or several), or those where boolean ``mask`` is true."""
        df = self.df
        if split is not None:
            wanted = [split] if isinstance(split, str) else list(split)
            df = df[df["split"].isin(wanted)]
        if mask is not None:
            df = df[mask]
        return Manifest(df.reset_index(drop=True), self.root, self.source)

    def with_df(self, df: pd.DataFrame) -> Manifest:
        return Manifest(df.reset_index(drop=True), self.root, self.source)

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the manifest as CSV with paths relative to the CSV's folder (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.df.copy()
        for column in ("image", "mask"):  # segmentation masks are paths too
            if column in df.columns:
                df[column] = [
                    _relative(self.resolve(p), path.parent.resolve()) if str(p) else p for p in df[column]
                ]
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest CSV written by :meth:`save` (relative paths start at the CSV's folder)."""
        path = Path(path)
        df = read_table(path, dtype=str, keep_default_na=False)
        return cls(df, path.parent.resolve(), source=str(path))


def _relative(resolved: str, base: Path) -> str:
    path, sep, key = resolved.partition(NPZ_SEP)
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        rel = path
    return f"{Path(rel).as_posix()}{sep}{key}"
