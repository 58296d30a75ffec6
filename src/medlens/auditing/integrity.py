"""Integrity: unreadable files with their reason, stray non-image files, and the format census."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import grouped_patients
from medlens.io.images import NPZ_REF, is_image_file
from medlens.io.volumes import is_nifti_file

# Sidecar files that legitimately sit inside an image tree.
_SIDECARS = {".csv", ".json", ".md", ".txt", ".yaml", ".yml", ".tsv", ".xlsx", ".xml", ".html", ".pdf"}


def unreadable_list(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Entries ``{"path", "reason", "kind", "split", "label"}`` for rows that could not be decoded."""
    bad = table[~table["readable"]]
    return [
        {
            "path": r.path,
            "reason": r.reason,
            "kind": r.reason_kind,
            "split": r.split,
            "label": getattr(r, "label", ""),
        }
        for r in bad.itertuples(index=False)
    ]


def stray_files(source: Path | None, table: pd.DataFrame) -> list[dict[str, Any]]:
    """Non-image files inside the class folders of a source directory that the manifest left out.

    Files at the top level and usual sidecars (CSV, JSON, text...) are ignored: only files a class-folder
    reader would have mistaken for images are worth reporting (e.g. ``glioma/scan.doc``, ``x.jpg.part``).
    Masks (a ``mask_path`` column) are known files; in a volume audit other NIfTI files (an unlabelled
    ``imagesTs`` folder) are images too.
    """
    if source is None or not Path(source).is_dir():
        return []

    source = Path(source)
    listed = list(table["path"]) + (list(table["mask_path"]) if "mask_path" in table.columns else [])
    known = {str(Path(p).resolve()) for p in listed if p and not NPZ_REF.match(str(p))}
    volumes = "depth" in table.columns
    found = []
    for f in sorted(source.rglob("*")):
        rel = f.relative_to(source)
        if (
            not f.is_file()
            or len(rel.parts) < 2
            or any(p.startswith(".") for p in rel.parts)
            or f.suffix.lower() in _SIDECARS
            or str(f.resolve()) in known
            or is_image_file(f)
            or (volumes and is_nifti_file(f))
        ):
            continue
        found.append(
            {
                "path": str(f),
                "reason": f"not an image file (suffix {f.suffix or 'none'!r})",
                "kind": "non-image",
                "split": "",
                "label": rel.parts[0],
            }
        )
    return found


def census(table: pd.DataFrame) -> dict[str, Any]:
    """Counts of modes, dtypes, bit depths, channel counts and sizes over the readable images."""
    ok = table[table["readable"]]
    sizes = Counter(f"{w}x{h}" for w, h in zip(ok["width"], ok["height"]))
    return {
        "n_readable": len(ok),
        "n_unreadable": int((~table["readable"]).sum()),
        "modes": _counts(ok["mode"]),
        "dtypes": _counts(ok["dtype"]),
        "bit_depths": _counts(ok["bits"]),
        "channels": _counts(ok["channels"]),
        "rgb_with_equal_channels": int(ok["gray_rgb"].sum()),
        "n_sizes": len(sizes),
        "sizes": dict(sizes.most_common(20)),
        "width": _range(ok["width"]),
        "height": _range(ok["height"]),
    }


def _counts(col: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in col.value_counts().items()}


def _range(col: pd.Series) -> dict[str, float]:
    if col.empty:
        return {}
    return {"min": int(col.min()), "median": float(col.median()), "max": int(col.max())}


def patients_across_splits(table: pd.DataFrame) -> dict[str, Any] | None:
    """The ``patients`` block of audit.json when cases are grouped by patient (some patient has several rows),
    else None: patient count and every patient whose readable cases lie in more than one split (patient-level
    leakage, whatever the pixels say). ``--fix`` moves such patients wholly into one split."""

    patients = grouped_patients(table["patient_id"])
    if patients is None:
        return None
    readable = table[table["readable"].astype(bool)]
    counts = readable.groupby([readable["patient_id"].astype(str), "split"]).size()
    several = [
        {"patient_id": pid, "splits": {str(s): int(n) for s, n in per.droplevel(0).items()}}
        for pid, per in counts.groupby(level=0)
        if len(per) > 1
    ]
    return {
        "n_patients": len(set(patients)),
        "n_in_several_splits": len(several),
        "in_several_splits": several,
    }
