"""`medlens audit`: everything wrong with a dataset before training on it, in one pass over the images.

Classification sources, 2D image/mask pairs and NIfTI volumes are audited alike: volumes add a spacing and
shape census (:mod:`medlens.auditing.volumes`), a ``mask`` column adds a check of every mask
(:mod:`medlens.auditing.masks`).

>>> result = audit("data/brain", "audit-out")          # writes audit-out/audit.json and audit.html
>>> result.findings_count, result.to_dict()["duplicates"]["n_cross_split"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from medlens.auditing.classes import class_balance
from medlens.auditing.clusters import intensity_clusters
from medlens.auditing.duplicates import DEFAULT_THRESHOLD, duplicates_summary, find_duplicate_groups
from medlens.auditing.fix import apply_fix
from medlens.auditing.geometry import MAD_K, size_outliers
from medlens.auditing.integrity import census, patients_across_splits, stray_files, unreadable_list
from medlens.auditing.masks import MASK_FEATURES, check_mask, masks_summary
from medlens.auditing.masks import mask_classes as source_mask_classes
from medlens.auditing.report import write_report
from medlens.auditing.scan import scan_image, scan_images
from medlens.auditing.summary import print_summary as _print
from medlens.auditing.volumes import VOLUME_FEATURES, scan_volume, volume_summary
from medlens.data.ingest import ingest
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.io.guard import accepts_image_limit
from medlens.io.volumes import is_nifti_file
from medlens.utils.files import check_output_path
from medlens.utils.progress import report

SCHEMA = "medlens.audit/1"
_FEATURES = {
    "readable": False,
    "reason": "",
    "reason_kind": "",
    "note": "",
    "width": 0,
    "height": 0,
    "channels": 0,
    "dtype": "",
    "bits": 0,
    "mode": "",
    "gray_rgb": False,
    "mean": np.nan,
    "std": np.nan,
    "pixel_hash": "",
    "phash": 0,
    "signature": None,
}


@dataclass
class AuditResult:
    """What one audit found.

    Attributes:
        summary: the audit.json content.
        table: one row per manifest row (``row`` = its position) with every per-image measurement.
        manifest: the audited manifest.
        thumbs: JPEG thumbnail bytes per ``row`` (readable images only), for the HTML report.
        out_dir: where audit.json / audit.html were written, if anywhere.
        fixed: the cleaned manifest when ``fix`` was requested.
        changes: the change records of the fix.
    """

    summary: dict[str, Any]
    table: pd.DataFrame
    manifest: Manifest
    thumbs: dict[int, bytes] = field(default_factory=dict, repr=False)
    out_dir: Path | None = None
    fixed: Manifest | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The audit.json content."""
        return self.summary

    @property
    def findings_count(self) -> int:
        """Unreadable or non-image files + size outliers + duplicate groups (+ spacing/depth outliers of
        volumes and mask problems, when there are volumes or masks)."""
        return int(self.summary["findings"]["total"])

    @property
    def groups(self) -> list[dict[str, Any]]:
        return self.summary["duplicates"]["groups"]


@accepts_image_limit
def audit(
    source: Manifest | str | Path,
    out_dir: Path | str | None = None,
    *,
    near_threshold: int | None = None,
    k_range=range(2, 9),
    fix: Path | str | None = None,
    prefer: str = "train",
    progress: bool = True,
    workers: int = 2,
    mask_classes: int | None = None,
) -> AuditResult:
    """Audit a dataset: integrity, geometry outliers, class balance, duplicates/leakage, intensity clusters;
    for NIfTI volumes also voxel spacing and depth, and for segmentation sources every mask.

    Args:
        source: a Manifest, a manifest CSV or any source ``medlens.ingest`` understands (class folders,
            image/mask pairs, NIfTI imagesTr/labelsTr folders, an MSD dataset.json...).
        out_dir: folder for audit.json and audit.html (created; each file replaced atomically); None
            writes nothing.
        near_threshold: largest pHash Hamming distance (0-64) counted as a near duplicate; default 6.
        k_range: numbers of intensity clusters to try.
        fix: if given, write the cleaned manifest (see :func:`medlens.auditing.fix.apply_fix`) to this CSV.
        prefer: split that keeps duplicates and receives moved leakage groups: "train" or "test".
        progress: show a progress bar.
        workers: decoding threads.
        mask_classes: label values masks may hold (2: binary {0, 1} or {0, 255}; K: 0..K-1); default the
            ``labels`` of an MSD dataset.json, else 2.

    Raises:
        MedlensError: bad arguments or an unreadable source.
    """
    threshold = DEFAULT_THRESHOLD if near_threshold is None else near_threshold
    _check_args(threshold, prefer, workers)
    if out_dir is not None:  # before any work: never a source, a run or a folder of someone else's files
        check_output_path(out_dir, sources=[source], what="audit folder", marker="audit")
    if fix is not None:
        check_output_path(
            fix, sources=[source], kind="file", option="--fix", what="cleaned manifest CSV", marker="manifest"
        )
    classes = _check_classes(source_mask_classes(source) if mask_classes is None else mask_classes)
    manifest, source_dir = load_source(source)
    if len(manifest) == 0:
        raise MedlensError(f"nothing to audit: {manifest.source or manifest.root} has no cases")
    start = time.perf_counter()
    report("audit", step="reading images", images=len(manifest))
    table, thumbs = scan_manifest(manifest, workers=workers, progress=progress, mask_classes=classes)
    elapsed = time.perf_counter() - start
    report("audit", step="duplicates, leakage, outliers and clusters", images=len(manifest))
    summary = build_summary(
        table, manifest, threshold=threshold, k_range=k_range, source_dir=source_dir, mask_classes=classes
    )
    summary["timing"] = {
        "scan_s": round(elapsed, 3),
        "total_s": round(time.perf_counter() - start, 3),
        "images_per_s": round(len(table) / max(elapsed, 1e-9), 1),
        "workers": workers,
    }
    result = AuditResult(summary, table, manifest, thumbs)
    if fix is not None:
        result.fixed, result.changes = apply_fix(manifest, result, prefer=prefer)
        saved = result.fixed.save(fix)
        summary["fix"] = fix_record(result.changes, prefer, saved, len(manifest), len(result.fixed))
    if out_dir is not None:
        report("audit", step="writing the report", images=len(manifest))
        result.out_dir = write_report(result, Path(out_dir))
    return result


def _check_args(threshold: Any, prefer: str, workers: Any) -> None:
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, np.integer))
        or not 0 <= threshold <= 64
    ):
        raise MedlensError(f"near_threshold must be a whole number of bits from 0 to 64, got {threshold!r}")
    if prefer not in ("train", "test"):
        raise MedlensError(f"prefer must be 'train' or 'test', got {prefer!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise MedlensError(f"workers must be a positive whole number, got {workers!r}")


def _check_classes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 2 <= value <= 255:
        raise MedlensError(f"mask_classes must be a whole number from 2 (binary masks) to 255, got {value!r}")
    return int(value)


def load_source(source: Manifest | str | Path) -> tuple[Manifest, Path | None]:
    """The manifest to audit, and the source folder (for stray-file checks) when ``source`` is one."""
    if isinstance(source, Manifest):
        return source, None
    path = Path(source)
    if not path.exists():
        raise MedlensError(f"audit source {path} does not exist; pass a dataset folder or a manifest CSV")

    # unlabelled sources can still be audited (integrity, duplicates, clusters)
    return ingest(path, require_labels=False), path if path.is_dir() else None


def scan_manifest(
    manifest: Manifest, workers: int = 2, progress: bool = True, mask_classes: int = 2
) -> tuple[pd.DataFrame, dict[int, bytes]]:
    """Decode every image (or NIfTI volume) and every mask once; the per-image table (one row per manifest
    row) and thumbnails.

    Volumes add the columns of :data:`~medlens.auditing.volumes.VOLUME_FEATURES`; a ``mask`` column adds
    ``mask_path`` and the columns of :data:`~medlens.auditing.masks.MASK_FEATURES`.
    """

    paths = manifest.paths()
    df = manifest.df
    volumes = any(is_nifti_file(p) for p in paths)
    masks = [manifest.resolve(m) for m in df["mask"]] if "mask" in df.columns else None
    features = {**_FEATURES, **(VOLUME_FEATURES if volumes else {}), **(MASK_FEATURES if masks else {})}
    with _progress_bar(len(paths), progress) as advance:
        if volumes or masks:
            cases = list(zip(paths, masks or [None] * len(paths), df["case_id"].astype(str)))
            records = scan_images(
                cases,
                workers=workers,
                progress=advance,
                scan=lambda case: _scan_case(*case, mask_classes=mask_classes),
            )
        else:
            records = scan_images(paths, workers=workers, progress=advance)
    thumbs = {i: r.pop("thumb") for i, r in enumerate(records) if "thumb" in r}
    table = pd.DataFrame(
        {
            "row": np.arange(len(df)),
            "case_id": df["case_id"].astype(str),
            "image": df["image"].astype(str),
            "path": paths,
            "split": df["split"],
            "patient_id": df["patient_id"].astype(str),
        }
    )
    if manifest.has_labels:
        table["label"] = df["label"].astype(str).to_numpy()
    if masks:
        table["mask_path"] = masks
    feats = pd.DataFrame([{**features, **r} for r in records], columns=list(features))
    feats["phash"] = feats["phash"].astype(np.uint64)
    return pd.concat([table, feats], axis=1), thumbs


def _scan_case(path: str, mask: str | None, case_id: str, mask_classes: int = 2) -> dict[str, Any]:
    """One case: the image or volume, then its mask (if any) against it."""

    record = scan_volume(path) if is_nifti_file(path) else scan_image(path)
    if mask is not None and str(mask):
        record.update(check_mask(mask, case_id, record, mask_classes))
    return record


class _progress_bar:
    """Rich progress bar (or nothing) yielding an ``advance(n)`` callback."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self._progress = total, enabled, None

    def __enter__(self):
        if not self.enabled:
            return None

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self._progress.__enter__()
        task = self._progress.add_task("audit: reading images", total=self.total)
        return lambda n: self._progress.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def build_summary(
    table: pd.DataFrame,
    manifest: Manifest,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    k_range=range(2, 9),
    source_dir: Path | None = None,
    mask_classes: int = 2,
) -> dict[str, Any]:
    """Every analysis on the per-image table, as the audit.json dict (also sets ``table["cluster"]``).

    A table with volume columns adds a ``volumes`` block and ``findings.spacing_outliers``; one with mask
    columns adds a ``masks`` block and ``findings.mask_problems``; cases grouped by patient add a ``patients``
    block and ``findings.patients_in_several_splits``.
    """
    unreadable = unreadable_list(table) + stray_files(source_dir, table)
    outliers, bounds = size_outliers(table)
    classes, balance = class_balance(table)
    groups = find_duplicate_groups(table, threshold)
    dups = duplicates_summary(groups, threshold)
    clusters, assign = intensity_clusters(table, k_range)
    table["cluster"] = assign
    findings = {
        "unreadable": len(unreadable),
        "size_outliers": len(outliers),
        "duplicate_groups": len(groups) - dups["n_same_patient"],
        "cross_split_groups": dups["n_cross_split"],
        "label_conflict_groups": dups["n_label_conflict"],
        "cross_patient_groups": dups["n_cross_patient"],
    }
    findings["total"] = len(unreadable) + len(outliers) + findings["duplicate_groups"]
    summary = {
        "schema": SCHEMA,
        "source": manifest.source or str(manifest.root),
        "n_images": len(table),
        "n_readable": int(table["readable"].sum()),
        "findings": findings,
        "unreadable": unreadable,
        "census": census(table),
        "size_outliers": outliers,
        "size_rules": bounds,
        "classes": classes,
        "class_balance": balance,
        "duplicates": dups,
        "clusters": clusters,
        "read_notes": _read_notes(table),
        "settings": {"near_threshold": threshold, "mad_k": MAD_K, "k_range": [int(k) for k in k_range]},
    }
    if "depth" in table.columns:
        summary["volumes"] = volume_summary(table)
        findings["spacing_outliers"] = len(summary["volumes"]["spacing_outliers"])
        findings["total"] += findings["spacing_outliers"]
    patients = patients_across_splits(table)
    if patients is not None:
        summary["patients"] = patients
        findings["patients_in_several_splits"] = patients["n_in_several_splits"]
        findings["total"] += findings["patients_in_several_splits"]
    if "mask_checked" in table.columns:
        summary["masks"] = masks_summary(table, mask_classes)
        findings["mask_problems"] = summary["masks"]["n_problems"]
        findings["total"] += findings["mask_problems"]
    findings["total"] = findings.pop("total")  # keep it last
    return summary


def _read_notes(table: pd.DataFrame) -> list[dict[str, str]]:
    """What the readers decided for readable files (the first page of a multi-page TIFF was used, ...)."""
    if "note" not in table.columns:
        return []
    rows = table[table["readable"] & table["note"].fillna("").astype(bool)]
    return [{"path": str(r.path), "note": str(r.note)} for r in rows.itertuples(index=False)]


def fix_record(
    changes: list[dict[str, Any]], prefer: str, saved: Path | None, n_before: int, n_after: int
) -> dict[str, Any]:
    """The ``fix`` block of audit.json (also recorded by ``train --audit-fix``)."""
    return {
        "manifest": str(saved) if saved else None,
        "prefer": prefer,
        "n_before": n_before,
        "n_after": n_after,
        "n_dropped": sum(c["action"] == "drop" for c in changes),
        "n_moved": sum(c["action"] == "move" for c in changes),
        "changes": changes,
    }


def print_summary(result: AuditResult, console=None) -> None:
    """One-screen rich summary (see :func:`medlens.auditing.summary.print_summary`)."""

    _print(result, console)
