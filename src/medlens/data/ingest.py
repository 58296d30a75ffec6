"""``ingest``: any supported source → :class:`~medlens.data.manifest.Manifest`.

The kind of source is detected by the adapters of :mod:`medlens.data.sources` (class folders, image CSVs
and saved manifests, MedMNIST npz, single images, and the segmentation layouts); new kinds register with
:func:`register_source`. Ingest only lists files: images are decoded later, where unreadable ones are
reported and skipped.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medlens.data.manifest import Manifest
from medlens.data.sources import SourceInfo, detect_source, get_source, list_sources, register_source
from medlens.errors import MedlensError

__all__ = ["ingest", "list_sources", "register_source"]

SOURCES_HINT = (
    "a folder of class folders (<root>/<class>/<image>), a CSV with image,label columns, "
    "a manifest CSV or a MedMNIST .npz"
)


def ingest(
    src: str | Path,
    *,
    label_names: Sequence[str] | None = None,
    kind: str | None = None,
    require_labels: bool = True,
    **options: Any,
) -> Manifest:
    """Detect what ``src`` is and list its cases as a manifest.

    Args:
        src: a dataset folder, a CSV (a saved manifest or ``image,label[,patient_id,split,...]``), a
            MedMNIST-style ``.npz``, a single image, or a segmentation layout (kaggle_3m, pairs CSV, NIfTI
            folders, MSD ``dataset.json``).
        label_names: class names in label order, for integer labels (npz arrays, CSV columns or folders
            named 0, 1, ...).
        kind: force a source kind by name (see :func:`list_sources`) instead of detecting it.
        require_labels: raise unless every case has a target (a ``label``, or a ``mask`` for segmentation);
            pass False to list unlabelled images for prediction.
        **options: passed to the adapter (e.g. ``validate=True`` for segmentation sources).

    Returns:
        The manifest; ``manifest.source`` describes what was found, e.g.
        ``"class folders: /data/brain (4 classes, 5708 images)"``.

    Raises:
        MedlensError: a missing path, an unrecognised or empty source, an option the source does not take,
            or (with ``require_labels``) cases without labels.
    """
    path = Path(src).expanduser()
    if not path.exists():
        raise MedlensError(f"{src} does not exist; pass {SOURCES_HINT}")
    info = get_source(kind) if kind else detect_source(path)
    if info is None:
        raise MedlensError(
            f"cannot tell what kind of dataset {src} is; pass {SOURCES_HINT} "
            f"(known kinds: {', '.join(s.name for s in list_sources())})"
        )
    if label_names is not None:
        options["label_names"] = list(label_names)
    _check_options(info, options)
    manifest = info.adapter.load(path, **options)
    if require_labels:
        check_targets(manifest, path, info.name)
    return manifest


def _check_options(info: SourceInfo, options: dict[str, Any]) -> None:
    """Reject options an adapter's ``load`` cannot take, before it runs (adapters with **options check
    their own)."""
    params = inspect.signature(info.adapter.load).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for key in options:
        if key not in accepted:
            raise MedlensError(
                f"option {key!r} does not apply to {info.name} sources; "
                f"they take: {', '.join(accepted) or 'no options'}"
            )


def check_targets(manifest: Manifest, path: Path, kind: str) -> None:
    """Raise unless every case has a label (or a mask).

    Raises:
        MedlensError: no ``label``/``mask`` column, or rows where it is empty (the first is named).
    """
    column = "label" if manifest.has_labels else "mask" if "mask" in manifest.df.columns else None
    if column is None:
        if kind == "csv":
            columns = ", ".join(manifest.df.columns)
            raise MedlensError(
                f"CSV {path} has no 'label' column (columns: {columns}); add one with the class of each image"
            )
        raise MedlensError(
            f"no class folders found in {path}; expected {path}/<class>/<image> or a CSV with "
            "image,label columns"
        )
    empty = manifest.df.index[manifest.df[column].astype(str).str.strip() == ""]
    if len(empty):
        first = manifest.df.loc[empty[0]]
        raise MedlensError(
            f"{len(empty)} of {len(manifest)} cases in {path} have no {column} (first: "
            f"{first['image']}); fill in every {column}, or ingest with require_labels=False "
            "to predict on them"
        )
