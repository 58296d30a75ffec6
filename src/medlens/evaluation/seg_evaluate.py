"""`medlens evaluate` for segmentation runs: masks at the original resolution, per-case and per-patient
metrics.

Metrics (summary.json ``metrics``, each with a 95 % bootstrap interval over patients):
``dice_patient`` (Buda et al. 2019: the Dice of each patient's slices stacked into one volume, averaged over
patients), ``dice_case`` and ``iou_case`` (mean over cases), ``hd95`` (mean over cases where it is defined;
pixels for slices, mm for volumes), ``surface_dice``. Every non-background label counts as foreground.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.cache import cache_images, cache_pairs
from medlens.data.manifest import Manifest
from medlens.data.seg_sources import check_pair
from medlens.errors import MedlensError, UnreadableImageError
from medlens.evaluation.calibration import calibration_summary
from medlens.evaluation.clinical import localisation_cohorts
from medlens.evaluation.evaluators import register_evaluator
from medlens.evaluation.plots import plot_examples, plot_reliability
from medlens.evaluation.seg_metrics import (
    dice_per_patient,
    mean_case_metrics,
    patient_bootstrap_ci,
    segmentation_case_metrics,
)
from medlens.io import read_image
from medlens.io.volumes import read_volume
from medlens.tasks.base import EvalContext, Evaluation
from medlens.tasks.gate import load_gate
from medlens.tasks.segmentation import overlay_rgb, predict_masks
from medlens.tasks.volumes import predict_volume, read_volume_case
from medlens.utils.progress import track

EMPTY_MASK_RULE = (
    "A case whose true and predicted masks are both empty scores Dice = IoU = surface Dice = 1 and "
    "HD95 = 0; when exactly one is empty, Dice = IoU = surface Dice = 0 and HD95 is undefined (left "
    "out of its mean and counted in hd95_undefined). A patient without foreground in truth and "
    "prediction scores dice_patient 1."
)


@register_evaluator("segmentation")
def evaluate_segmentation(loaded, sub: Manifest, ctx: EvalContext) -> Evaluation:
    """Predict and score every case of ``sub`` (2D slices, optionally gated, or 3D volumes)."""
    gate = ctx.gate
    if gate is not None and not hasattr(gate, "positive_probability"):
        gate = load_gate(gate)
    t0 = time.perf_counter()
    pipeline = None
    if loaded.spec.spatial_dims == 3:
        if gate is not None:
            raise MedlensError("--gate classifies 2D slices; it cannot gate a 3D segmentation run")
        preds, truths, spacings, sub, skipped = _predict_volumes(loaded, sub, ctx.progress)
    else:
        sampler = PixelSampler()
        preds, truths, sub, skipped, pipeline = _predict_slices(
            loaded, sub, ctx.prepared, gate, ctx.progress, sampler
        )
        spacings = [None] * len(preds)
    seconds = (time.perf_counter() - t0) / max(1, len(preds))
    cases = _case_records(sub, preds, truths, spacings)
    if not cases:
        raise MedlensError(f"no readable cases to evaluate in {ctx.data} ({ctx.split})")
    result, extra = _metrics(loaded, cases, preds, truths, ctx.n_bootstrap, seconds)
    figures = _figures(loaded, sub, preds, truths, cases, ctx.out / "figures")
    if loaded.spec.spatial_dims == 2:
        extra["calibration"] = sampler.summary(truths)
        if extra["calibration"] is not None:
            figures["Pixel calibration (sampled pixels)"] = plot_reliability(
                extra["calibration"], ctx.out / "figures" / "reliability_pixels.png"
            )
    if ctx.clinical is not None:
        cohorts, cohort_figures = localisation_cohorts(
            sub.df,
            cases,
            ctx.clinical,
            metric="dice",
            n_bootstrap=ctx.n_bootstrap,
            figures=ctx.out / "figures",
            per_patient={p["patient_id"]: p["dice"] for p in extra["per_patient"]},
        )
        extra.update(cohorts)
        figures.update(cohort_figures)
    predictions = pd.DataFrame(
        [
            {k: v for k, v in c.items() if k != "empty"} | {"image": img}
            for c, img in zip(cases, sub.df["image"])
        ]
    )
    return Evaluation(
        cases=cases,
        result=result,
        predictions=predictions,
        extra={"model": {"name": loaded.name, "options": loaded.options}, "skipped": skipped, **extra},
        figures=figures,
        skipped=skipped,
        after={} if pipeline is None else {"pipeline": pipeline},
    )


class PixelSampler:
    """Collects the foreground probability of a seeded random sample of pixels of every slice (at the
    original size) while the masks are predicted, to measure the per-pixel calibration without a second
    inference pass."""

    def __init__(self, per_case: int = 2000, seed: int = 0):
        self.per_case = per_case
        self.rng = np.random.default_rng(seed)
        self.samples: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, i: int, probs: np.ndarray) -> None:
        """``probs``: (K, H, W) class probabilities of case ``i``; foreground = 1 − background."""
        flat = probs.reshape(probs.shape[0], -1)
        where = self.rng.choice(flat.shape[1], size=min(self.per_case, flat.shape[1]), replace=False)
        self.samples[i] = (where, 1.0 - flat[0, where])

    def summary(self, truths: list[np.ndarray]) -> dict[str, Any] | None:
        """Calibration of the sampled pixels' foreground probability (a binary problem per pixel)."""
        if not self.samples:
            return None
        p, y = [], []
        for i, (where, fg) in self.samples.items():
            if i < len(truths):
                p.append(fg)
                y.append(truths[i].reshape(-1)[where] > 0)
        prob = np.clip(np.concatenate(p).astype(np.float64), 0.0, 1.0)
        out = calibration_summary(np.concatenate(y).astype(np.int64), np.stack([1 - prob, prob], axis=1))
        out["unit"] = f"pixels: {self.per_case} sampled at random per case (seed 0), foreground probability"
        out["foreground_share"] = float(np.concatenate(y).mean())
        return out


def _predict_slices(loaded, sub: Manifest, prepared, gate, progress: bool, sampler=None):

    spec = loaded.spec
    if (
        prepared is not None
        and prepared.images.shape[1:3] == (spec.channels, spec.image_size)
        and prepared.manifest.df["case_id"].isin(sub.df["case_id"]).sum() == len(sub)
    ):
        rows = np.flatnonzero(prepared.manifest.df["case_id"].isin(set(sub.df["case_id"])).to_numpy())
        images, masks, shapes = prepared.images[rows], prepared.targets[rows], prepared.shapes[rows]
        sub, skipped = prepared.manifest.with_df(prepared.manifest.df.iloc[rows]), []
    else:
        cached = cache_pairs(sub, spec.image_size, spec.channels, progress=progress)
        images, masks, shapes, skipped = cached.images, cached.masks, cached.shapes, cached.skipped
        sub = sub.with_df(sub.df.iloc[cached.kept])
    preds = predict_masks(loaded.model, spec, images, shapes, on_probs=sampler)
    truths = _original_masks(sub, masks, shapes, spec.image_size)
    pipeline = None
    if gate is not None:
        pipeline = _apply_gate(gate, sub, preds, truths, progress)
    return preds, truths, sub, skipped, pipeline


def _original_masks(sub: Manifest, masks: np.ndarray, shapes: np.ndarray, size: int) -> list[np.ndarray]:
    """True masks at each image's own resolution (re-read only where the cache resized them)."""

    out = []
    for i, row in enumerate(sub.df.itertuples(index=False)):
        if tuple(shapes[i]) == (size, size):
            out.append(masks[i])
        else:
            raw = read_image(sub.resolve(row.mask))
            out.append(check_pair(raw, raw, row.case_id))
    return out


def _apply_gate(gate, sub: Manifest, preds: list, truths: list, progress: bool) -> dict[str, Any]:
    """Empty the masks of slices the classifier calls negative; count false-positive slices both ways."""

    spec = gate.loaded.spec
    cached = cache_images(sub, spec.image_size, spec.channels, progress=progress, description="Gating slices")
    positive = np.zeros(len(sub), dtype=bool)
    positive[cached.kept] = gate.positive_probability(cached.images) >= gate.threshold
    empty_truth = np.array([not t.any() for t in truths])
    fp_before = int(sum(p.any() and e for p, e in zip(preds, empty_truth)))
    for i in np.flatnonzero(~positive):
        preds[i] = np.zeros_like(preds[i])
    fp_after = int(sum(p.any() and e for p, e in zip(preds, empty_truth)))
    return {
        **gate.to_dict(),
        "slices_segmented": int(positive.sum()),
        "slices_gated_out": int((~positive).sum()),
        "false_positive_slices": fp_after,
        "false_positive_slices_without_gate": fp_before,
        "missed_tumour_slices_by_gate": int((~positive & ~empty_truth).sum()),
    }


def _predict_volumes(loaded, sub: Manifest, progress: bool):

    preds, truths, spacings, kept, skipped = [], [], [], [], []
    rows = list(sub.df.itertuples(index=False))
    for pos, row in enumerate(
        track(rows, total=len(rows), description="Segmenting volumes", disable=not progress)
    ):
        try:
            volume, truth, spacing = read_volume_case(sub, row, loaded.spec)
        except UnreadableImageError as err:
            skipped.append(err.record(case_id=row.case_id))
            continue
        preds.append(predict_volume(loaded.model, loaded.spec, volume, spacing))
        truths.append(truth)
        spacings.append(spacing)
        kept.append(pos)
    return preds, truths, spacings, sub.with_df(sub.df.iloc[kept]), skipped


def _case_records(sub: Manifest, preds, truths, spacings) -> list[dict[str, Any]]:

    cases = []
    for (case_id, patient_id), p, t, sp in zip(
        sub.df[["case_id", "patient_id"]].itertuples(index=False, name=None), preds, truths, spacings
    ):
        m = segmentation_case_metrics(p > 0, t > 0, sp)
        cases.append(
            {
                "case_id": str(case_id),
                "patient_id": str(patient_id),
                **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in m.items()},
                "foreground_true": int((t > 0).sum()),
                "foreground_pred": int((p > 0).sum()),
            }
        )
    return cases


def _metrics(
    loaded, cases, preds, truths, n_bootstrap: int, seconds: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics block (Dice per patient, mean case metrics, bootstrap CIs over patients) and the other
    summary facts."""
    pids = [c["patient_id"] for c in cases]
    per_patient = dice_per_patient([p > 0 for p in preds], [t > 0 for t in truths], pids)
    means = mean_case_metrics(cases)
    ci = {"n_bootstrap": n_bootstrap, "seed": 0}
    metrics = {
        "dice_patient": {
            "value": float(np.mean(list(per_patient.values()))),
            "ci95": patient_bootstrap_ci(list(per_patient.values()), list(per_patient), **ci),
        }
    }
    for name, key in (
        ("dice_case", "dice"),
        ("iou_case", "iou"),
        ("hd95", "hd95"),
        ("surface_dice", "surface_dice"),
    ):
        metrics[name] = {
            "value": means[key],
            "ci95": patient_bootstrap_ci([c[key] for c in cases], pids, **ci),
        }
    unit = "mm" if loaded.spec.spatial_dims == 3 else "pixels"
    metrics["hd95"]["note"] = f"{unit}; undefined for {means['hd95_undefined']} case(s) with one empty mask"
    counts = {
        "cases_with_foreground": sum(c["foreground_true"] > 0 for c in cases),
        "false_positive_cases": sum(c["empty"] == "target" for c in cases),
        "false_negative_cases": sum(c["empty"] == "pred" for c in cases),
        "both_empty": means["both_empty"],
    }
    extra = {
        "class_names": list(loaded.spec.class_names),
        "empty_mask_rule": EMPTY_MASK_RULE,
        "spatial_dims": loaded.spec.spatial_dims,
        "n_patients": len(per_patient),
        "counts": counts,
        "inference_seconds_per_case": round(seconds, 4),
        "per_patient": [
            {"patient_id": p, "dice": round(d, 6), "n_cases": pids.count(p)} for p, d in per_patient.items()
        ],
    }
    return {"metrics": metrics, "bootstrap": patient_bootstrap(n_bootstrap)}, extra


def patient_bootstrap(n_bootstrap: int) -> dict[str, Any]:
    """summary.json ``bootstrap`` of the localisation tasks: percentile intervals over patients."""
    return {
        "method": "percentile bootstrap over patients",
        "n_resamples": n_bootstrap,
        "seed": 0,
        "ci": 0.95,
    }


def _figures(loaded, sub: Manifest, preds, truths, cases, folder: Path) -> dict[str, Path]:
    """Contour overlays (truth green, prediction red) of the best, median and worst case with foreground."""

    figures: dict[str, Path] = {}
    picks = pick_examples(cases, "dice")
    if picks:
        panels = []
        for label, i in picks:
            image, pred, truth = _display(loaded, sub, i, preds[i], truths[i])
            panels.append(
                (
                    f"{label}: {cases[i]['case_id']} (Dice {cases[i]['dice']:.3f})",
                    overlay_rgb(image, pred, truth),
                )
            )
        figures["Examples: truth (green) vs prediction (red)"] = plot_examples(
            panels, folder / "examples.png"
        )
    return figures


def pick_examples(cases: list[dict], key: str) -> list[tuple[str, int]]:
    """Best, median and worst case by ``key`` among cases with a true object (all cases if none has one)."""
    pool = [i for i, c in enumerate(cases) if c.get("foreground_true", 1) > 0] or list(range(len(cases)))
    if not pool:
        return []
    ranked = sorted(pool, key=lambda i: cases[i][key], reverse=True)
    picks = [("best", ranked[0]), ("median", ranked[len(ranked) // 2]), ("worst", ranked[-1])]
    seen, out = set(), []
    for label, i in picks:
        if i not in seen:
            seen.add(i)
            out.append((label, i))
    return out


def _display(loaded, sub: Manifest, i: int, pred: np.ndarray, truth: np.ndarray):
    """The image plane to draw for case ``i`` (3D: the slice with the most true foreground)."""
    path = sub.resolve(sub.df["image"].iloc[i])
    if loaded.spec.spatial_dims == 2:
        return read_image(path), pred, truth
    volume = read_volume(path)[0]
    k = int(np.argmax((truth > 0).reshape(-1, truth.shape[-1]).sum(0)))
    plane = volume[1 if volume.shape[0] == 3 else 0, :, :, k]
    return plane, pred[:, :, k], truth[:, :, k]
