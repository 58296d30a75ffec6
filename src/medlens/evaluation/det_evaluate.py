"""`medlens evaluate` for detection runs: one predicted box per image against the true box.

Metrics (each with a 95 % bootstrap interval over patients): ``iou_mean`` (mean IoU) and ``iou50_rate`` (share
of cases with IoU >= 0.5). Boxes are compared in each image's own pixel coordinates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.cache import cache_pairs
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.evaluation.clinical import localisation_cohorts
from medlens.evaluation.evaluators import register_evaluator
from medlens.evaluation.plots import plot_examples
from medlens.evaluation.seg_evaluate import patient_bootstrap, pick_examples
from medlens.evaluation.seg_metrics import patient_bootstrap_ci
from medlens.io import read_image
from medlens.tasks.base import EvalContext, Evaluation
from medlens.tasks.boxes import paired_ious
from medlens.tasks.detection import BOX_COLUMNS, draw_boxes, predict_boxes, with_boxes

MISSING_BOX_RULE = (
    "Only cases with a true box are scored (a single-box detector always answers with a box); cases "
    "without one (an empty mask) are left out and counted in cases_without_box."
)


@register_evaluator("detection")
def evaluate_detection(loaded, sub: Manifest, ctx: EvalContext) -> Evaluation:
    """Predict a box for every case of ``sub`` and compare it with the true box."""
    if ctx.gate is not None:
        raise MedlensError("--gate applies to segmentation runs, not detection")
    has_columns = all(c in sub.df.columns for c in BOX_COLUMNS)
    sub, dropped = with_boxes(sub, from_masks=not has_columns)
    spec = loaded.spec
    t0 = time.perf_counter()
    cached = cache_pairs(sub, spec.image_size, spec.channels, masks=False, progress=ctx.progress)
    sub = sub.with_df(sub.df.iloc[cached.kept])
    if not len(sub):
        raise MedlensError(f"no readable images to evaluate in {ctx.data} ({ctx.split})")
    pred = predict_boxes(loaded.model, spec, cached.images, cached.shapes)
    seconds = (time.perf_counter() - t0) / len(sub)
    truth = sub.df[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    ious = paired_ious(list(pred), list(truth))
    cases = [
        {
            "case_id": str(c),
            "patient_id": str(p),
            "target": [round(float(v), 2) for v in t],
            "prediction": [round(float(v), 2) for v in b],
            "iou": round(float(i), 6),
        }
        for c, p, t, b, i in zip(sub.df["case_id"], sub.df["patient_id"], truth, pred, ious)
    ]
    table = pd.DataFrame(
        {
            "case_id": sub.df["case_id"],
            "patient_id": sub.df["patient_id"],
            "image": sub.df["image"],
            **{f"true_{c}": truth[:, k] for k, c in enumerate(BOX_COLUMNS)},
            **{f"pred_{c}": pred[:, k].round(2) for k, c in enumerate(BOX_COLUMNS)},
            "iou": ious.round(6),
        }
    )
    pids = [c["patient_id"] for c in cases]
    extra = {
        "model": {"name": loaded.name, "options": loaded.options},
        "skipped": cached.skipped,
        "missing_box_rule": MISSING_BOX_RULE,
        "cases_without_box": dropped,
        "n_patients": len(set(pids)),
        "box_format": "x0, y0, x1, y1 in pixels of the original image (x1, y1 exclusive)",
        "inference_seconds_per_case": round(seconds, 5),
    }
    figures = _figures(sub, cases, ctx.out / "figures")
    if ctx.clinical is not None:
        cohorts, cohort_figures = localisation_cohorts(
            sub.df,
            cases,
            ctx.clinical,
            metric="iou",
            n_bootstrap=ctx.n_bootstrap,
            figures=ctx.out / "figures",
        )
        extra.update(cohorts)
        figures.update(cohort_figures)
    return Evaluation(
        cases=cases,
        result=_metrics(ious, pids, ctx.n_bootstrap),
        predictions=table,
        extra=extra,
        figures=figures,
        skipped=cached.skipped,
    )


def _metrics(ious: np.ndarray, pids: list[str], n_bootstrap: int) -> dict[str, Any]:
    """Mean IoU and the share of IoU >= 0.5, with bootstrap intervals over patients."""
    ci = {"n_bootstrap": n_bootstrap, "seed": 0}
    hits = (ious >= 0.5).astype(np.float64)
    metrics = {
        "iou_mean": {"value": float(ious.mean()), "ci95": patient_bootstrap_ci(ious, pids, **ci)},
        "iou50_rate": {"value": float(hits.mean()), "ci95": patient_bootstrap_ci(hits, pids, **ci)},
    }
    return {"metrics": metrics, "bootstrap": patient_bootstrap(n_bootstrap)}


def _figures(sub: Manifest, cases: list[dict], folder: Path) -> dict[str, Path]:
    panels = []
    for label, i in pick_examples(cases, "iou"):
        image = read_image(sub.resolve(sub.df["image"].iloc[i]))
        drawn = np.asarray(draw_boxes(image, [cases[i]["prediction"], cases[i]["target"]]))
        panels.append((f"{label}: {cases[i]['case_id']} (IoU {cases[i]['iou']:.3f})", drawn))
    figures: dict[str, Path] = {}
    if panels:
        figures["Examples: truth (green) vs prediction (red)"] = plot_examples(
            panels, folder / "examples.png"
        )
    return figures
