"""NIfTI segmentation sources: ``imagesTr``/``labelsTr``-style folder pairs matched by file name, and
Medical Segmentation Decathlon ``dataset.json`` files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest, natural_key
from medlens.data.seg_checks import _finish, _stem
from medlens.errors import MedlensError

FOLDER_PAIRS = (
    ("imagesTr", "labelsTr"),
    ("images", "labels"),
    ("image", "label"),
    ("images", "masks"),
    ("imgs", "masks"),
)
NIFTI = re.compile(r"^(?P<case>.+?)(?P<channel>_\d{4})?\.nii(\.gz)?$", re.IGNORECASE)


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
