"""MedMNIST-style npz files: ``train_images``/``train_labels``, ``val_...``, ``test_...`` (or bare
``images``/``labels``). Each image becomes a row whose ``image`` cell is ``file.npz::train_images[12]``.

Label names come from, in order: the ``label_names`` argument, a sidecar ``<file>.labels.json`` (a list, or
``{"0": "normal", ...}``), the official MedMNIST names when the file name starts with a MedMNIST flag, or the
integer itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.manifest import Manifest
from medlens.data.sources import register_source
from medlens.data.sources.labels import check_names
from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.images import npz_headers

_ORGAN = (
    "bladder",
    "femur-left",
    "femur-right",
    "heart",
    "kidney-left",
    "kidney-right",
    "liver",
    "lung-left",
    "lung-right",
    "pancreas",
    "spleen",
)
#: Label names from MedMNIST v2's INFO (medmnist/info.py), for the single-label 2D datasets.
MEDMNIST_LABELS: dict[str, tuple[str, ...]] = {
    "pneumoniamnist": ("normal", "pneumonia"),
    "breastmnist": ("malignant", "normal, benign"),
    "bloodmnist": (
        "basophil",
        "eosinophil",
        "erythroblast",
        "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ),
    "dermamnist": (
        "actinic keratoses and intraepithelial carcinoma",
        "basal cell carcinoma",
        "benign keratosis-like lesions",
        "dermatofibroma",
        "melanoma",
        "melanocytic nevi",
        "vascular lesions",
    ),
    "octmnist": ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
    "pathmnist": (
        "adipose",
        "background",
        "debris",
        "lymphocytes",
        "mucus",
        "smooth muscle",
        "normal colon mucosa",
        "cancer-associated stroma",
        "colorectal adenocarcinoma epithelium",
    ),
    "organamnist": _ORGAN,
    "organcmnist": _ORGAN,
    "organsmnist": _ORGAN,
}
SPLIT_PREFIXES = (("train", "train_"), ("val", "val_"), ("test", "test_"), ("", ""))


@register_source("npz", priority=400, description="a MedMNIST-style .npz (train_images, train_labels, ...)")
class NpzArrays:
    """A MedMNIST-style npz with ``<split>_images`` and ``<split>_labels`` arrays."""

    def detect(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() == ".npz"

    def load(self, path: Path, *, label_names: Sequence[str] | None = None, **options: Any) -> Manifest:
        """One row per image; only array headers and labels are read, never the images.

        Raises:
            MedlensError: no image arrays, a labels array that does not match its images, multi-label
                arrays, 3D volumes, or a label without a name in the names given.
        """
        if options:
            raise MedlensError(f"unknown option {sorted(options)[0]!r} for an npz source; use label_names")
        shapes = array_shapes(path)
        groups = [
            (split, f"{p}images", f"{p}labels") for split, p in SPLIT_PREFIXES if f"{p}images" in shapes
        ]
        if not groups:
            found = ", ".join(sorted(shapes)) or "none"
            raise MedlensError(
                f"{path} has no image arrays: expected train_images / val_images / "
                f"test_images (MedMNIST layout) or images; it has {found}"
            )
        frames = []
        with np.load(path, allow_pickle=False) as data:  # never unpickle user data
            for split, ikey, lkey in groups:
                n = _check_images(shapes[ikey], path, ikey)
                labels = _labels(data[lkey], n, path, lkey) if lkey in shapes else None
                frames.append(
                    pd.DataFrame(
                        {
                            "case_id": [f"{split}-{i}" if split else str(i) for i in range(n)],
                            "split": split,
                            "image": [f"{path.name}::{ikey}[{i}]" for i in range(n)],
                            "label": labels if labels is not None else -1,
                        }
                    )
                )
        df = pd.concat(frames, ignore_index=True)
        df["patient_id"] = df["case_id"]
        if (df["label"] < 0).all():
            df = df.drop(columns="label")
        else:
            names = _names(path, label_names, int(df["label"].max()))
            df["label"] = [names[v] if v >= 0 else "" for v in df["label"]]
        manifest = Manifest(df, path.parent.resolve(), source=str(path))
        classes = f"{len(manifest.classes)} classes, " if manifest.has_labels else ""
        splits = ", ".join(manifest.splits)
        manifest.source = f"npz: {path} ({classes}{len(manifest)} images; splits {splits})"
        return manifest


def array_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shape of every array in an npz, read from the .npy headers without loading the data."""
    try:
        return {key: shape for key, (shape, _) in npz_headers(path).items()}
    except UnreadableImageError as err:
        raise MedlensError(f"cannot read npz {path}: {err.reason}") from err


def _check_images(shape: tuple[int, ...], path: Path, key: str) -> int:
    if len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3, 4)):
        return shape[0]
    raise MedlensError(
        f"{path}: {key} has shape {shape}; expected 2D images (N, H, W) or (N, H, W, C) with "
        "C = 1, 3 or 4 (3D volumes in npz are not supported yet)"
    )


def _labels(arr: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise MedlensError(
            f"{path}: {key} has shape {arr.shape}, i.e. several labels per image "
            "(multi-label, like ChestMNIST); medlens needs one class per image: keep one "
            "column"
        )
    arr = arr.reshape(len(arr), -1)[:, 0] if arr.ndim == 2 else arr
    if arr.ndim != 1 or len(arr) != n:
        raise MedlensError(
            f"{path}: {key} has shape {arr.shape} but there are {n} images; give one label per image"
        )
    if not (np.issubdtype(arr.dtype, np.number) and np.all(np.mod(arr, 1) == 0) and np.all(arr >= 0)):
        raise MedlensError(f"{path}: {key} must hold class numbers 0, 1, 2, ...; got values like {arr[:3]}")
    return arr.astype(np.int64)


def _names(path: Path, label_names: Sequence[str] | None, top: int) -> dict[int, str]:
    if label_names is not None:
        names, where = dict(enumerate(check_names(label_names, "label_names"))), "label_names"
    elif (sidecar := _sidecar(path)) is not None:
        names, where = _read_sidecar(sidecar), str(sidecar)
    elif (flag := next((f for f in MEDMNIST_LABELS if path.name.lower().startswith(f)), None)) is not None:
        names, where = dict(enumerate(MEDMNIST_LABELS[flag])), f"the MedMNIST names of {flag}"
    else:
        return {i: str(i) for i in range(top + 1)}
    missing = [i for i in range(top + 1) if i not in names]
    if missing:
        raise MedlensError(
            f"label {missing[0]} in {path} has no name in {where} ({len(names)} names); "
            "give one name per label value, in order from 0"
        )
    return names


def _sidecar(path: Path) -> Path | None:
    for candidate in (path.with_name(path.name + ".labels.json"), path.with_suffix(".labels.json")):
        if candidate.is_file():
            return candidate
    return None


def _read_sidecar(sidecar: Path) -> dict[int, str]:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MedlensError(f"cannot read label names {sidecar}: {err}") from err
    if isinstance(data, list):
        return dict(enumerate(check_names(data, str(sidecar))))
    if isinstance(data, dict):
        try:
            keys = [int(k) for k in data]
        except ValueError:
            keys = []
        if keys:
            return dict(zip(keys, check_names(list(data.values()), str(sidecar))))
    raise MedlensError(f'{sidecar} must hold a list of class names or {{"0": "name", ...}}, got {data!r:.80}')
