"""Segmentation masks in the audit: each mask read once, checked against its image, foreground measured.

The check is :func:`medlens.data.seg_sources.check_pair` (same size as the image, only the expected
values), the check training applies to every case. It needs only the image's spatial shape, which the image's
own scan record already holds: the image is not decoded a second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.seg_sources import check_pair, detect_msd, msd_info
from medlens.errors import MedlensError, UnreadableImageError
from medlens.io import read_image
from medlens.io.volumes import read_volume

#: Extra per-row features when the manifest has a ``mask`` column (defaults for unchecked rows).
MASK_FEATURES: dict[str, Any] = {"mask_checked": False, "mask_problem": "", "fg_fraction": np.nan}


def check_mask(mask_path: str, case_id: str, record: dict[str, Any], num_classes: int = 2) -> dict[str, Any]:
    """Check one mask against its image's scan record.

    Args:
        mask_path: resolved mask file (a raster image, or NIfTI for a volume).
        case_id: named in problems.
        record: the image's record from :func:`~medlens.auditing.scan.scan_image` or
            :func:`~medlens.auditing.volumes.scan_volume`; the mask of an unreadable image is not checked
            (the case is already reported, and dropped by ``--fix``).
        num_classes: 2 for binary masks ({0, 1} or {0, 255}); more for label maps 0..num_classes-1.

    Returns:
        ``{"mask_checked", "mask_problem", "fg_fraction"}``: the problem is "" for a good mask, and the
        foreground fraction (share of non-zero pixels or voxels) is NaN when the mask has a problem.
    """
    if not record.get("readable"):
        return {"mask_checked": False}

    volume = "depth" in record
    shape = (
        (record["width"], record["height"], record["depth"])
        if volume
        else (record["height"], record["width"])
    )
    try:
        mask = _read_mask(mask_path, volume)
        # check_pair only compares the image's spatial shape: a zero-strided stand-in costs no memory
        labels = check_pair(
            np.broadcast_to(np.uint8(0), shape),
            mask,
            case_id,
            spatial_dims=3 if volume else 2,
            num_classes=num_classes,
        )
    except UnreadableImageError as err:
        return {"mask_checked": True, "mask_problem": f"mask unreadable: {err.reason}"}
    except MedlensError as err:
        return {"mask_checked": True, "mask_problem": str(err)}
    return {
        "mask_checked": True,
        "mask_problem": "",
        "fg_fraction": float(np.count_nonzero(labels) / max(labels.size, 1)),
    }


def _read_mask(path: str, volume: bool) -> np.ndarray:
    if volume:
        return read_volume(path)[0]
    return read_image(path)


def masks_summary(table: pd.DataFrame, num_classes: int = 2) -> dict[str, Any]:
    """The ``masks`` block of audit.json.

    Returns:
        ``{"num_classes", "n_checked", "n_skipped" (image unreadable), "n_problems", "problems": [{"case_id",
        "mask", "reason", "split", "row"}], "n_empty" (good masks without foreground), "foreground_fraction":
        {"n", "min", "median", "max"} over good non-empty masks}``.
    """
    checked = table[table["mask_checked"].astype(bool)]
    bad = checked[checked["mask_problem"] != ""]
    good = checked[checked["mask_problem"] == ""]["fg_fraction"].astype(float)
    filled = good[good > 0]
    fraction = (
        {
            "n": len(filled),
            "min": float(filled.min()),
            "median": float(filled.median()),
            "max": float(filled.max()),
        }
        if len(filled)
        else {"n": 0}
    )
    return {
        "num_classes": int(num_classes),
        "n_checked": len(checked),
        "n_skipped": int(len(table) - len(checked)),
        "n_problems": len(bad),
        "problems": [
            {
                "case_id": r.case_id,
                "mask": r.mask_path,
                "reason": r.mask_problem,
                "split": r.split,
                "row": int(r.row),
            }
            for r in bad.itertuples(index=False)
        ],
        "n_empty": int((good == 0).sum()),
        "foreground_fraction": fraction,
    }


def mask_classes(source: Any) -> int:
    """Label values a source's masks may hold: the ``labels`` of an MSD dataset.json, else 2 (binary)."""
    if not isinstance(source, (str, Path)):
        return 2

    try:
        labels = msd_info(source)["labels"] if detect_msd(source) else {}
    except MedlensError:
        return 2
    return max(len(labels), 2) if isinstance(labels, dict) else 2
