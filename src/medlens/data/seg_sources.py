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

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.manifest import REQUIRED, Manifest, natural_key
from medlens.errors import MedlensError
from medlens.io import read_image
from medlens.io.guard import read_table
from medlens.io.volumes import is_nifti_file, read_volume

KAGGLE_SLICE = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)\.tiff?$", re.IGNORECASE)
KAGGLE_MASK = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)_mask\.tiff?$", re.IGNORECASE)
FOLDER_PAIRS = (
    ("imagesTr", "labelsTr"),
    ("images", "labels"),
    ("image", "label"),
    ("images", "masks"),
    ("imgs", "masks"),
)
NIFTI = re.compile(r"^(?P<case>.+?)(?P<channel>_\d{4})?\.nii(\.gz)?$", re.IGNORECASE)
RESERVED = set(REQUIRED) | {"mask", "label", "slice_index"}


# -- checks ------------------------------------------------------------------------------------------
def check_pair(
    image: np.ndarray, mask: np.ndarray, case_id: str, *, spatial_dims: int = 2, num_classes: int = 2
) -> np.ndarray:
    """Check that ``mask`` fits ``image`` and holds only allowed values; return it as labels.

    Args:
        image: 2D image (H, W) or (H, W, C) as :func:`medlens.io.read_image` returns it, or for
            ``spatial_dims=3`` a channel-first volume (C, X, Y, Z) as :func:`medlens.io.volumes.read_volume`
            returns it.
        mask: the mask, same layout (a 2D mask may have identical colour channels).
        case_id: named in error messages.
        spatial_dims: 2 for slices, 3 for volumes.
        num_classes: 2 for a binary mask ({0, 1} or {0, 255}); more for label maps with values
            0..num_classes-1.

    Returns:
        The mask as uint8 labels without channels ((H, W) or (X, Y, Z)); 255 becomes 1 for binary masks.

    Raises:
        MedlensError: the shapes differ or the mask holds unexpected values, naming the case.
    """
    mask = _mask_plane(np.asarray(mask), case_id, spatial_dims)
    image = np.asarray(image)
    spatial = image.shape[:2] if spatial_dims == 2 else image.shape[-3:]
    if tuple(spatial) != mask.shape:
        raise MedlensError(
            f"case {case_id}: mask shape {mask.shape} does not match image shape "
            f"{tuple(spatial)}; image and mask must have the same size"
        )
    values = np.unique(mask)
    if num_classes == 2:
        if set(values.tolist()) <= {0, 1}:
            return mask.astype(np.uint8)
        if set(values.tolist()) <= {0, 255}:
            return (mask == 255).astype(np.uint8)
        raise MedlensError(
            f"case {case_id}: mask values {_show(values)} are not binary ({{0, 1}} or "
            "{0, 255}); lossy formats such as JPEG blur masks: "
            "save them as PNG, TIFF or NIfTI"
        )
    if values.min() < 0 or values.max() >= num_classes or not np.all(np.mod(values, 1) == 0):
        raise MedlensError(
            f"case {case_id}: mask values {_show(values)} are outside the labels "
            f"0..{num_classes - 1}; check num_classes or the mask file"
        )
    return mask.astype(np.uint8)


def _mask_plane(mask: np.ndarray, case_id: str, spatial_dims: int) -> np.ndarray:
    if spatial_dims == 3 and mask.ndim == 4:
        if mask.shape[0] != 1:
            raise MedlensError(f"case {case_id}: a mask volume needs one channel, got shape {mask.shape}")
        return mask[0]
    if spatial_dims == 2 and mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, mask.shape[-1])):
            raise MedlensError(
                f"case {case_id}: the mask has {mask.shape[-1]} different colour channels; "
                "save it as a single-channel (greyscale) image"
            )
        return mask[..., 0]
    if mask.ndim != spatial_dims:
        raise MedlensError(f"case {case_id}: expected a {spatial_dims}D mask, got shape {mask.shape}")
    return mask


def _show(values: np.ndarray) -> str:
    shown = [round(float(v), 3) if np.issubdtype(values.dtype, np.floating) else int(v) for v in values[:8]]
    return f"{shown}{' ...' if values.size > 8 else ''}"


def validate_pairs(manifest: Manifest, *, num_classes: int = 2) -> None:
    """Read every image/mask pair of ``manifest`` and :func:`check_pair` it (slow: reads everything)."""

    for row in manifest.df.itertuples(index=False):
        image_path, mask_path = manifest.resolve(row.image), manifest.resolve(row.mask)
        if is_nifti_file(image_path):
            check_pair(
                read_volume(image_path)[0],
                read_volume(mask_path)[0],
                row.case_id,
                spatial_dims=3,
                num_classes=num_classes,
            )
        else:
            check_pair(read_image(image_path), read_image(mask_path), row.case_id, num_classes=num_classes)


def _finish(df: pd.DataFrame, root: Path, kind: str, where: Path, opts: dict[str, Any]) -> Manifest:
    unknown = sorted(set(opts) - {"validate", "num_classes"})
    if unknown:
        raise MedlensError(
            f"unknown option {unknown[0]!r} for a segmentation source: use validate, num_classes"
        )
    if df.empty:
        raise MedlensError(f"no image/mask pairs found in {where}")
    patients = df["patient_id"].nunique() if "patient_id" in df.columns else len(df)
    counts = f"{patients} patients, {len(df)} slices" if "slice_index" in df.columns else f"{len(df)} cases"
    manifest = Manifest(df, root, source=f"{kind}: {where} ({counts})")
    if opts.get("validate"):
        validate_pairs(manifest, num_classes=int(opts.get("num_classes", 2)))
    return manifest


# -- kaggle_3m ---------------------------------------------------------------------------------------
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


def _stem(path: str) -> str:
    name = Path(str(path)).name
    if ".nii" in name.lower():
        return re.sub(r"\.nii(\.gz)?$", "", name, flags=re.IGNORECASE)
    return Path(name).stem


# -- NIfTI folders -------------------------------------------------------------------------------------
def _folder_pair(root: Path) -> tuple[Path, Path] | None:
    for images, labels in FOLDER_PAIRS:
        if (root / images).is_dir() and (root / labels).is_dir():
            return root / images, root / labels
    return None


def detect_nifti_folders(path: str | Path) -> bool:
    """True for a folder with image/label subfolders (``imagesTr``/``labelsTr`` ...) holding NIfTI files."""
    path = Path(path)
    pair = _folder_pair(path) if path.is_dir() else None
    return pair is not None and any(NIFTI.match(f.name) for f in pair[0].iterdir())


def load_nifti_folders(path: str | Path, **opts: Any) -> Manifest:
    """Manifest from NIfTI image and label folders, matched by file name.

    Raises:
        MedlensError: no folder pair, an image without its label (or the reverse), naming the case, or
            several channel files per case (nnU-Net ``_0001``...), which is not supported yet.
    """
    root = Path(path)
    pair = _folder_pair(root) if root.is_dir() else None
    if pair is None:
        names = ", ".join(f"{a}/{b}" for a, b in FOLDER_PAIRS)
        raise MedlensError(f"{path} has no image/label folders; expected one of {names}")
    images, labels = (_nifti_cases(folder) for folder in pair)
    for case, files in images.items():
        if len(files) > 1:
            raise MedlensError(
                f"case {case}: {len(files)} channel files in {pair[0]}; multi-file channels "
                "are not supported yet: stack them into one 4D NIfTI (channels last)"
            )
        if case not in labels:
            raise MedlensError(
                f"case {case}: no label file for {files[0].name} in {pair[1]}; add it or remove the image"
            )
    orphans = sorted(set(labels) - set(images), key=natural_key)
    if orphans:
        raise MedlensError(f"case {orphans[0]}: label {labels[orphans[0]][0].name} has no image in {pair[0]}")
    rows = [
        {
            "case_id": case,
            "patient_id": case,
            "split": "",
            "image": images[case][0].relative_to(root).as_posix(),
            "mask": labels[case][0].relative_to(root).as_posix(),
        }
        for case in sorted(images, key=natural_key)
    ]
    return _finish(pd.DataFrame(rows), root, "NIfTI folders", root, opts)


def _nifti_cases(folder: Path) -> dict[str, list[Path]]:
    cases: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        m = NIFTI.match(f.name)
        if m and f.is_file() and not f.name.startswith("."):  # "._x.nii.gz" is macOS litter in MSD archives
            cases.setdefault(m["case"], []).append(f)
    return cases


# -- MSD dataset.json ------------------------------------------------------------------------------------
def _dataset_json(path: Path) -> Path:
    return path / "dataset.json" if path.is_dir() else path


def detect_msd(path: str | Path) -> bool:
    """True for an MSD ``dataset.json`` (or a folder holding one) with a ``training`` list."""
    path = _dataset_json(Path(path))
    if not (path.is_file() and path.suffix.lower() == ".json"):
        return False
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")).get("training"), list)
    except (OSError, ValueError, AttributeError):
        return False


def msd_info(path: str | Path) -> dict[str, Any]:
    """Dataset-level fields of an MSD ``dataset.json``: ``name``, ``labels`` (value → name) and
    ``modality`` (channel → name)."""
    data = _read_msd(_dataset_json(Path(path)))
    return {key: data.get(key, default) for key, default in (("name", ""), ("labels", {}), ("modality", {}))}


def _read_msd(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MedlensError(f"cannot read MSD dataset file {path}: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("training"), list):
        raise MedlensError(
            f'{path} has no \'training\' list of {{"image", "label"}} entries; '
            "is it a Medical Segmentation Decathlon dataset.json?"
        )
    return data


def load_msd(path: str | Path, **opts: Any) -> Manifest:
    """Manifest from an MSD ``dataset.json`` (or its folder): the ``training`` cases (the unlabelled
    ``test`` list is left out). Paths are relative to the JSON's folder.

    Raises:
        MedlensError: a malformed entry or a missing file, naming the case.
    """
    path = _dataset_json(Path(path))
    data = _read_msd(path)
    root = path.parent.resolve()
    rows = []
    for i, entry in enumerate(data["training"]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("image", "label")):
            raise MedlensError(
                f"training entry {i} of {path} needs string 'image' and 'label' paths, got {entry!r}"
            )
        case = _stem(entry["image"])
        for key in ("image", "label"):
            if not (root / entry[key]).is_file():
                raise MedlensError(f"case {case}: {key} file {entry[key]} listed in {path} does not exist")
        rows.append(
            {
                "case_id": case,
                "patient_id": case,
                "split": "",
                "image": Path(entry["image"]).as_posix().removeprefix("./"),
                "mask": Path(entry["label"]).as_posix().removeprefix("./"),
            }
        )
    return _finish(pd.DataFrame(rows), root, "MSD dataset.json", path, opts)


#: name → (detect, load) for the ingest registry.
SOURCES: dict[str, tuple[Callable[[str | Path], bool], Callable[..., Manifest]]] = {
    "kaggle_3m": (detect_kaggle_3m, load_kaggle_3m),
    "pairs_csv": (detect_pairs_csv, load_pairs_csv),
    "nifti_folders": (detect_nifti_folders, load_nifti_folders),
    "msd": (detect_msd, load_msd),
}
