"""Scores that survive leakage: when a run is evaluated on other data (``evaluate RUN --data SRC``), every
case that is a copy or near-copy of an image the model trained on or was selected on is found with the
audit's hashes, and the metrics are computed again without those cases (``"metrics_deduplicated"``).

Public datasets leak: the same scan exported twice, a slice next to its neighbour, a re-encoded copy in
both the "training" and the "testing" folder. A test score on such cases measures memory, not skill. The rule
is the audit's: identical decoded pixels, or 64-bit DCT pHashes within 4 bits, against every image of the
run's train and val splits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from medlens.data.hashing import nearest_distance, phash, pixel_hash, to_gray01
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.evaluation.metrics import classification_metrics
from medlens.evaluation.seg_metrics import patient_bootstrap_ci
from medlens.io.failures import read_guarded
from medlens.io.images import read_image
from medlens.utils.progress import track

RADIUS = 4
RULE = (
    f"cases whose image is an exact copy (identical decoded pixels) or a near copy (64-bit pHash within "
    f"{RADIUS} bits) of an image in the run's train or val split are left out"
)


def image_hashes(
    paths: Sequence[str], *, progress: bool = False, what: str = "images"
) -> tuple[list, np.ndarray]:
    """Exact pixel hash (None when unreadable) and pHash (0 when unreadable) of each 2D image."""
    exact, perceptual = [], np.zeros(len(paths), dtype=np.uint64)
    for i, path in enumerate(
        track(paths, total=len(paths), description=f"Hashing {what}", disable=not progress)
    ):
        try:
            arr = read_guarded(path, read_image, path)
        except MedlensError:  # one broken file costs its own hash only
            exact.append(None)
            continue
        exact.append(pixel_hash(arr))
        perceptual[i] = np.uint64(phash(to_gray01(arr)))
    return exact, perceptual


def near_duplicate_flags(
    eval_paths: Sequence[str], train_manifest: Manifest, *, progress: bool = False
) -> tuple[np.ndarray, dict[str, Any]]:
    """For each evaluated image, whether it copies or nearly copies an image of the run's train/val splits.

    Returns:
        ``(flags (N,) bool, {"n_exact", "n_near", "n_reference", "n_reference_total", "unread_reference"})``:
        ``n_reference`` of the ``n_reference_total`` training images could be read (the first few others are
        named in ``unread_reference``); see :func:`check_status`.
    """
    reference = train_manifest.subset(["train", "val"])
    ref_exact, ref_phash = image_hashes(
        reference.paths(), progress=progress, what="the run's training images"
    )
    ev_exact, ev_phash = image_hashes(list(eval_paths), progress=progress, what="the evaluated images")
    readable = np.array([h is not None for h in ref_exact])
    known = {h for h in ref_exact if h is not None}
    exact = np.array([h is not None and h in known for h in ev_exact])
    distance = nearest_distance(ev_phash, ref_phash[readable])
    near = np.array([h is not None for h in ev_exact]) & (distance <= RADIUS)
    flags = exact | near
    return flags, {
        "n_exact": int(exact.sum()),
        "n_near": int((near & ~exact).sum()),
        "n_reference": int(readable.sum()),
        "n_reference_total": len(ref_exact),
        "unread_reference": [p for p, h in zip(reference.paths(), ref_exact) if h is None][:3],
    }


def check_status(info: dict[str, Any], root_note: str = "") -> dict[str, Any]:
    """Whether the leakage check ran on all the run's training images: ``{"check": "complete" | "partial" |
    "not run", "warning"}`` (no warning when complete). A check that read none of them found nothing
    because it compared with nothing, and says so."""
    read, total = int(info.get("n_reference", 0)), int(info.get("n_reference_total", 0))
    if total and read == total:
        return {"check": "complete"}
    first = os.path.normpath((info.get("unread_reference") or ["?"])[0])
    where = f" ({root_note})" if root_note else ""
    if read == 0:
        return {
            "check": "not run",
            "warning": f"leakage check not run: none of the run's {total} training images could be read "
            f"(first: {first}){where}; put the training data back where the run's manifest.csv points to "
            "find copies of it among the evaluated cases",
        }
    return {
        "check": "partial",
        "warning": f"leakage check incomplete: {total - read} of the run's {total} training images could not "
        f"be read (first: {first}){where}; copies of those cannot be found",
    }


def deduplicated_metrics(
    task: str,
    cases: list[dict[str, Any]],
    flags: np.ndarray,
    info: dict[str, Any],
    *,
    class_names: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    root_note: str = "",
) -> dict[str, Any]:
    """The ``metrics_deduplicated`` block: the task's metrics on the cases without a (near) copy in training.

    Classification: every metric of :func:`~medlens.evaluation.metrics.classification_metrics` with its
    bootstrap interval; other tasks: the mean of each per-case number (Dice, IoU, ...) with a patient
    bootstrap interval.
    """
    keep = ~np.asarray(flags, dtype=bool)
    kept = [c for c, k in zip(cases, keep) if k]
    block: dict[str, Any] = {
        "rule": RULE,
        "n_cases": len(kept),
        "n_removed": int((~keep).sum()),
        **info,
        **check_status(info, root_note),
        "metrics": {},
    }
    if block["check"] == "not run":  # without the training images the scores "without copies" mean nothing
        block["note"] = block["warning"]
        return block
    if not kept:
        block["note"] = "every evaluated case has a copy or near copy in the run's training data"
        return block
    if task == "classification" and class_names:
        names = list(class_names)
        y = np.array([names.index(str(c["target"])) for c in kept])
        probs = np.array([[float(c["probabilities"][n]) for n in names] for c in kept])
        groups = [str(c.get("patient_id") or c.get("case_id")) for c in kept]
        result = classification_metrics(y, probs, names, n_bootstrap=n_bootstrap, groups=groups)
        block["metrics"] = result["metrics"]
        return block
    pids = [str(c.get("patient_id") or c.get("case_id")) for c in kept]
    numeric = [k for k, v in kept[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for key in numeric:
        if key.startswith(("foreground_", "n_")):
            continue
        values = np.array([float(c.get(key)) if c.get(key) is not None else np.nan for c in kept])
        if np.isnan(values).all():
            continue
        block["metrics"][f"{key}_case" if key in ("dice", "iou") else key] = {
            "value": float(np.nanmean(values)),
            "ci95": patient_bootstrap_ci(values, pids, n_bootstrap=n_bootstrap),
        }
    return block
