"""The ``classification`` evaluator: class probabilities of every case, accuracy, F1, AUC and calibration
with bootstrap intervals over patients, and their figures (confusion matrix, ROC, reliability)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.data.manifest import Manifest, grouped_patients
from medlens.data.prepared import prepare
from medlens.errors import MedlensError
from medlens.evaluation import plots
from medlens.evaluation.calibrate import before_after, calibration_flag
from medlens.evaluation.calibration import ECE_CI_NOTE, calibration_summary
from medlens.evaluation.clinical import ClinicalOptions, classification_analyses
from medlens.evaluation.evaluators import register_evaluator
from medlens.evaluation.metrics import cases_from_arrays, classification_metrics
from medlens.models.run_files import read_run_json, read_run_yaml
from medlens.tasks.base import EvalContext, Evaluation
from medlens.tasks.classification import decide, predict_logits, softmax


@register_evaluator("classification")
def evaluate_classification(loaded, sub: Manifest, ctx: EvalContext) -> Evaluation:
    """Predict and score every case of ``sub`` (the cases training cached are reused when they fit)."""
    if ctx.gate is not None:
        raise MedlensError(f"--gate applies to segmentation runs; {ctx.run_dir} is a classification run")
    spec, classes = loaded.spec, list(loaded.spec.class_names)
    prepared = ctx.prepared
    if prepared is not None and (prepared.images.shape[1], prepared.images.shape[2]) == (
        spec.channels,
        spec.image_size,
    ):
        idx = prepared.indices(ctx.split)
        sub = prepared.manifest.with_df(prepared.manifest.df.iloc[idx])
        images, targets, skipped = prepared.images[idx], prepared.targets[idx], prepared.skipped
    else:
        p = prepare(sub, classes, spec.image_size, spec.channels, progress=ctx.progress)
        sub, images, targets, skipped = p.manifest, p.images, p.targets, p.skipped
    logits = predict_logits(loaded, images)
    probs = softmax(logits, loaded.temperature)
    df = sub.df
    groups = grouped_patients(df["patient_id"])
    result = classification_metrics(
        targets, probs, classes, n_bootstrap=ctx.n_bootstrap, seed=0, groups=groups
    )
    result["metrics"]["ece"]["ci_note"] = ECE_CI_NOTE
    cases = cases_from_arrays(df["case_id"].tolist(), df["patient_id"].tolist(), targets, probs, classes)
    calib = result["calibration"] = calibration_summary(targets, probs)
    fig = ctx.out / "figures"
    clinical, clinical_figures = classification_analyses(
        df,
        targets,
        probs,
        classes,
        ctx.clinical or ClinicalOptions(),
        n_bootstrap=ctx.n_bootstrap,
        groups=groups,
        operating_point=loaded.operating_point,
        figures=fig,
    )
    figures = {
        "Confusion matrix": plots.plot_confusion_matrix(
            result["confusion_matrix"], classes, fig / "confusion_matrix.png"
        ),
        "ROC": plots.plot_roc(targets, probs, classes, fig / "roc.png"),
        "Reliability": plots.plot_reliability(calib, fig / "reliability.png"),
        **clinical_figures,
    }
    extra = {
        "model": {"name": loaded.name, "options": loaded.options},
        "skipped": skipped,
        "calibration": calib,
        "class_names": classes,
        "audit_fix": _audit_fix(ctx.run_dir),
        "calibrated": calibration_flag(loaded, ctx.split),
        **clinical,
    }
    if loaded.temperature is not None:
        extra["calibration_change"] = before_after(targets, logits, loaded.temperature)
    decided = decide(probs, classes, loaded.operating_point)
    return Evaluation(
        cases=cases,
        result=result,
        predictions=_predictions(df, targets, probs, classes, decided),
        extra=extra,
        figures=figures,
        skipped=skipped,
        data_summary=_data_summary(ctx.run_dir),
    )


def _predictions(df: pd.DataFrame, targets, probs, classes: list[str], decided) -> pd.DataFrame:
    """predictions.csv: ``prediction`` follows the run's operating point when one is set (else argmax).

    Probabilities are written at full float64 precision (the shortest text that reads back to the same
    number): an operating point's threshold sits exactly on a case's score, so rounding would move cases
    across it and the table could not be reproduced from this file.
    """
    table = pd.DataFrame(
        {
            "case_id": df["case_id"],
            "patient_id": df["patient_id"],
            "image": df["image"],
            "target": [classes[t] for t in targets],
            "prediction": [classes[i] for i in decided],
            "confidence": np.asarray(probs, dtype=np.float64).max(1),
        }
    )
    for i, c in enumerate(classes):
        table[f"p_{c}"] = np.asarray(probs[:, i], dtype=np.float64)
    return table


def _data_summary(run_dir: Path) -> dict[str, dict[str, int]] | None:
    """Class counts per split of the run's training data, from train.json."""
    return read_run_json(run_dir / "train.json").get("class_counts")


def _audit_fix(run_dir: Path) -> dict[str, Any]:
    """Whether training data was leakage-checked and cleaned by `--audit-fix`, and how many changes."""
    cfg = read_run_yaml(run_dir / "config.yaml")
    changes = read_run_json(run_dir / "train.json").get("audit_fix") or []
    return {"applied": bool(cfg.get("audit_fix")), "changes": len(changes)}
