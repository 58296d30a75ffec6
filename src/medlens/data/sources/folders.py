"""Folders of images: ``<root>/<class>/<image>``, ``<root>/<split>/<class>/<image>``, or no class level.

Raster images are listed, never opened. DICOM files (by suffix, or files without an image suffix that carry
the DICOM preamble) have their header read, without the pixel data, so that structured reports, RT plans,
waveforms and DICOMDIRs are left out (and said so in the manifest's source line) instead of listed as images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest, natural_key
from medlens.data.sources import register_source
from medlens.data.sources.labels import name_labels
from medlens.errors import MedlensError
from medlens.io.dicom import non_image_dicom
from medlens.io.images import DICOM_SUFFIXES, RASTER_SUFFIXES, is_image_file

#: Folder names (case-insensitive) that mean a split rather than a class.
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
SKIP_FOLDERS = {"__macosx"}  # zip-archive litter from macOS


def no_images_hint(path: Path) -> str:
    """What to do when ``path`` holds no images (shared by the messages of several adapters)."""
    return (
        f"put one folder per class with the images inside ({path}/<class>/<image>), or pass a CSV with "
        "image,label columns or a MedMNIST .npz"
    )


def list_images(root: Path, left_out: list[tuple[str, str]] | None = None) -> list[str]:
    """Image files under ``root`` as POSIX paths relative to it, in natural order; hidden entries skipped.

    Args:
        root: the folder.
        left_out: when given, receives ``(relative path, reason)`` for each DICOM file whose header says it
            holds no image (a structured report, an RT plan, ...); those are never listed.
    """
    found: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a symlink loop: do not walk the same folder twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(
            (d for d in dirnames if not d.startswith(".") and d.lower() not in SKIP_FOLDERS), key=natural_key
        )
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames, key=natural_key):
            path = os.path.join(dirpath, name)
            if name.startswith(".") or not is_image_file(path):
                continue
            rel_name = name if rel == "." else f"{Path(rel).as_posix()}/{name}"
            reason = non_image_dicom(path) if Path(name).suffix.lower() not in RASTER_SUFFIXES else None
            if reason is not None:
                if left_out is not None:
                    left_out.append((rel_name, reason))
                continue
            found.append(rel_name)
    return found


def case_id_of(rel: str) -> str:
    """The relative path without its image suffix (``MR.1.3.12`` keeps its dots: they are not a suffix)."""
    p = PurePosixPath(rel)
    return str(p.with_suffix("")) if p.suffix.lower() in RASTER_SUFFIXES | DICOM_SUFFIXES else rel


def layout(root: Path, rels: list[str]) -> tuple[list[str], list[str | None], bool]:
    """Split and class of every image, and whether a split level exists.

    The first folder level is a split level when every top folder is a split name (train, Val, Testing...);
    the next level down is the class. Images with no class folder above them get class None.

    Raises:
        MedlensError: split folders mixed with other folders at the top level.
    """
    parts = [rel.split("/") for rel in rels]
    tops = {p[0] for p in parts if len(p) > 1}
    split_tops = {t for t in tops if t.lower() in SPLIT_FOLDERS}
    if split_tops and split_tops != tops:
        others = sorted(tops - split_tops, key=natural_key)
        raise MedlensError(
            f"{root} mixes split folders ({', '.join(sorted(split_tops))}) with other folders "
            f"({', '.join(others[:3])}); put every class folder inside a split folder, or "
            "remove the split level"
        )
    splits, labels = [], []
    for p in parts:
        if split_tops and len(p) > 1:
            splits.append(SPLIT_FOLDERS[p[0].lower()])
            p = p[1:]
        else:
            splits.append("")
        labels.append(p[0] if len(p) > 1 else None)
    return splits, labels, bool(split_tops)


@register_source("folder", priority=900, description="class folders <root>/[<split>/]<class>/<image>")
class ImageFolder:
    """Class folders ``<root>/[<split>/]<class>/<image>``, or a plain folder of images (no labels)."""

    def detect(self, path: Path) -> bool:
        return path.is_dir()

    def load(self, path: Path, *, label_names: Sequence[str] | None = None, **options: Any) -> Manifest:
        """List the images under ``path``; class = folder name, split = the split folder if there is one.

        Images lying outside any class folder are left out when class folders exist. Without class folders
        the manifest has no ``label`` column (enough for predict; ingest's ``require_labels`` rejects it).

        Raises:
            MedlensError: no images at all, or split folders mixed with other folders.
        """
        if options:
            raise MedlensError(f"unknown option {sorted(options)[0]!r} for a folder source; use label_names")
        root = path.resolve()
        non_images: list[tuple[str, str]] = []
        rels = list_images(root, non_images)
        if not rels:
            raise MedlensError(
                f"no images found in {path}; {no_images_hint(path)}{_what_is_there(root, non_images)}"
            )
        splits, labels, has_split = layout(root, rels)
        keep = [i for i, label in enumerate(labels) if label is not None] or list(range(len(rels)))
        df = pd.DataFrame(
            {
                "case_id": [case_id_of(rels[i]) for i in keep],
                "split": [splits[i] for i in keep],
                "image": [rels[i] for i in keep],
            }
        )
        df["patient_id"] = df["case_id"]
        if labels[keep[0]] is not None:
            df["label"] = [labels[i] for i in keep]
            if label_names is not None:
                df["label"] = name_labels(df["label"], label_names, f"the class folders of {path}")
        source = _describe(root, df, len(rels) - len(keep), has_split) + non_image_note(non_images)
        return Manifest(df, root, source=source)


def non_image_note(non_images: list[tuple[str, str]]) -> str:
    """ "; 2 DICOM files that hold no image left out (sr.dcm: a DICOM structured report ...)" or ""."""
    if not non_images:
        return ""
    first, reason = non_images[0]
    more = f"; +{len(non_images) - 1} more" if len(non_images) > 1 else ""
    return f"; {len(non_images)} DICOM file(s) without an image left out (first: {first}, {reason}{more})"


def _describe(root: Path, df: pd.DataFrame, dropped: int, has_split: bool) -> str:
    if "label" not in df.columns:
        return f"image folder: {root} ({len(df)} images, no class folders)"
    text = f"class folders: {root} ({df['label'].nunique()} classes, {len(df)} images"
    if has_split:
        text += f"; splits {', '.join(s for s in ('train', 'val', 'test') if (df['split'] == s).any())}"
    if dropped:
        text += f"; {dropped} images outside class folders left out"
    return text + ")"


def _what_is_there(root: Path, non_images: list[tuple[str, str]] = ()) -> str:
    if non_images:
        first, reason = non_images[0]
        return f" ({len(non_images)} DICOM file(s) there hold no image, e.g. {first}: {reason})"
    try:
        files = [f for f in root.rglob("*") if f.is_file() and not f.name.startswith(".")]
    except OSError:
        return ""
    if not files:
        return " (the folder is empty)"
    suffixes = sorted({f.suffix.lower() or "(none)" for f in files})[:5]
    return (
        f" (it holds {len(files)} files, none of them images: {', '.join(suffixes)}; images are "
        f"{', '.join(sorted(RASTER_SUFFIXES | DICOM_SUFFIXES))} or DICOM)"
    )
