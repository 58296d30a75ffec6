"""From a source to cached tensors: ingest, split, subset, decode once, and per-split loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from medlens.data.cache import CachedImages, cache_images
from medlens.data.ingest import ingest
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError


@dataclass
class PreparedData:
    """A manifest whose readable rows are decoded; ``split`` and ``label`` columns are final."""

    manifest: Manifest  # readable cases only, aligned with ``images``
    images: np.ndarray  # uint8 (N, C, S, S)
    targets: (
        np.ndarray
    )  # int64 class indices; uint8 masks (N, S, S) for segmentation; box masks for detection
    classes: list[str]
    skipped: list[dict]
    extra: tuple[np.ndarray, ...] = ()  # more per-case tensors of a batch (segmentation: patient codes)
    shapes: np.ndarray | None = None  # (N, 2) original (height, width), for resizing predictions back
    info: dict = field(default_factory=dict)  # task-specific facts for train.json
    notes: list = field(
        default_factory=list
    )  # what the readers decided ({"path", "note"}: first page used, ...)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.manifest.df["split"].to_numpy() == split)

    def loader(self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0) -> DataLoader:
        idx = self.indices(split)
        ds = TensorDataset(
            torch.from_numpy(self.images[idx]),
            torch.from_numpy(self.targets[idx]),
            *(torch.from_numpy(e[idx]) for e in self.extra),
        )
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=gen,
            num_workers=0,
            drop_last=shuffle and len(idx) > batch_size,
        )


def resolve_source(source, require_labels: bool = True) -> Manifest:
    """A Manifest as given, or ingest a path (manifest CSV, class folders, npz, image/mask pairs, ...).

    ``require_labels``: every case needs a label (classification); the other tasks check their own targets
    (masks or boxes), through their ``resolve`` hook (:meth:`medlens.tasks.base.Task.resolve`).
    """
    if isinstance(source, Manifest):
        return source

    return ingest(source, require_labels=require_labels)


def check_labels(manifest: Manifest) -> list[str]:
    """Classes of a labelled manifest; single-class or unlabelled data is a user error."""
    if not manifest.has_labels or len(manifest) == 0:
        raise MedlensError(
            f"{manifest.source or manifest.root}: no labelled images found; "
            "give class folders (<root>/<class>/<image>) or a CSV with image,label columns"
        )
    classes = manifest.classes
    if len(classes) < 2:
        raise MedlensError(
            f"{manifest.source or manifest.root}: only one class ({classes[0]!r}) found; "
            "a classifier needs images of at least two classes"
        )
    return classes


def prepare(
    manifest: Manifest,
    classes: list[str],
    size: int,
    channels: int,
    *,
    workers: int = 2,
    progress: bool = True,
) -> PreparedData:
    """Decode every row once; drop unreadable rows (reported in ``skipped``)."""
    cached: CachedImages = cache_images(manifest, size, channels, workers=workers, progress=progress)
    kept = manifest.with_df(manifest.df.iloc[cached.kept])
    if len(kept) == 0:
        raise MedlensError(
            f"none of the {len(manifest)} images in {manifest.source or manifest.root} "
            f"could be read (first: {cached.skipped[0]['path']}: {cached.skipped[0]['reason']})"
        )
    index = {c: i for i, c in enumerate(classes)}
    if kept.has_labels:
        unknown = sorted(set(kept.df["label"]) - set(index))
        if unknown:
            raise MedlensError(f"labels {unknown} are not among the model's classes {classes}")
        targets = kept.df["label"].map(index).to_numpy(dtype=np.int64)
    else:
        targets = np.full(len(kept), -1, dtype=np.int64)
    skipped = cached.skipped
    if manifest.has_labels:  # say which class lost each file, for the check below and the report
        label_of = dict(zip(manifest.df["case_id"].astype(str), manifest.df["label"].astype(str)))
        skipped = [{**s, "label": label_of.get(str(s.get("case_id")), "")} for s in skipped]
    return PreparedData(kept, cached.images, targets, classes, skipped, notes=cached.notes)


def check_readable_classes(data: PreparedData, split: str = "train") -> None:
    """Stop when a class has no readable image left in ``split`` (every one of its files was skipped).

    A class with no training image would still be an output of the model, and macro averages would count it.
    """
    labels = data.manifest.df["label"].to_numpy()[data.indices(split)]
    empty = [c for c in data.classes if not (labels == c).any()]
    if not empty:
        return
    lost = [s for s in data.skipped if s.get("label") == empty[0]]
    first = f" (e.g. {lost[0]['path']}: {lost[0]['reason']})" if lost else ""
    raise MedlensError(
        f"class {empty[0]!r} has no readable image in the {split} split: all of its files were "
        f"skipped{first}; fix those files or remove the class"
    )


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images scaled to [0, 1] (on up to 2000 images)."""
    sample = images[:: max(1, len(images) // 2000)].astype(np.float32) / 255.0
    mean = sample.mean(axis=(0, 2, 3))
    std = sample.std(axis=(0, 2, 3)).clip(min=1e-3)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
