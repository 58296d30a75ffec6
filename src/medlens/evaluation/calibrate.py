"""`medlens calibrate RUN`: fit temperature scaling on the run's validation split and store it in the run.

From then on every command that loads the run (predict, evaluate, explain, triage, the gate) divides the
network's scores by T before the softmax and says so (``"calibrated": {"method": "temperature", "T",
"fit_on": "val"}`` in summary.json). Predictions never change (argmax is unaffected); probabilities do.

Honesty: T is fitted on the validation split, so calibration figures on that split are in-sample; summary.json
marks them (``calibrated.fit_on`` equals the evaluated split) and evaluate prints before/after on it only with
that warning. Judge calibration on a split the fit never saw (test, or ``--data``).

Refusals: the test split (it must stay unseen) and the train split (the network has fitted those cases, so
its scores on them are overconfident by construction and the temperature would mean nothing); a fit whose T
falls outside [0.05, 20] (:data:`~medlens.models.run_files.T_MIN`, ``T_MAX``): when the model separates the
fitting cases perfectly the likelihood only grows as T shrinks (T runs off to ~0), when it is wrong on them
it only grows as T grows (T runs off to thousands); either way there is no interior optimum and the
"temperature" records only that. Fewer than :data:`FEW_CASES` cases are fitted, with a warning stored in
calibration.json and printed: one scalar is well determined by a few dozen cases, but not by a handful.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medlens.data.manifest import Manifest
from medlens.data.prepared import prepare
from medlens.errors import MedlensError
from medlens.evaluation.calibration import calibration_summary, fit_temperature
from medlens.models.checkpoint import CALIBRATION_FILE, load_model
from medlens.models.run_files import temperature_problem
from medlens.tasks.classification import predict_logits, softmax
from medlens.utils.files import write_json

#: Below this many cases on the fitting split, calibrate warns that T is poorly determined.
FEW_CASES = 20


def calibrate(
    run_dir: str | Path, *, split: str = "val", reset: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Fit one temperature on ``split`` of the run's own manifest and write ``RUN/calibration.json``.

    Args:
        run_dir: a classification run from ``medlens train``.
        split: the split to fit on (default the validation split; never the test split).
        reset: remove the run's calibration instead (probabilities go back to the raw softmax).
        progress: show progress bars while decoding.

    Returns:
        What was written: ``{"method": "temperature", "T", "fit_on", "n", "before": {...}, "after": {...}}``
        with ECE, Brier and NLL on the fitting split before and after (in-sample after), or
        ``{"removed": bool}`` with ``reset``.
    """
    run_dir = Path(run_dir)
    path = run_dir / CALIBRATION_FILE
    if reset:
        existed = path.is_file()
        path.unlink(missing_ok=True)
        return {"removed": existed}
    if split == "test":
        raise MedlensError(
            "refusing to calibrate on the test split: it must stay unseen; use --split val (the default)"
        )
    if split == "train":
        raise MedlensError(
            "refusing to calibrate on the train split: the model has fitted those cases, so a temperature "
            "fitted on them means nothing; use --split val (the default)"
        )
    loaded = load_model(run_dir, calibration=False)  # a damaged calibration.json is what this replaces
    if loaded.spec.task != "classification":
        raise MedlensError(
            f"{run_dir} is a {loaded.spec.task} run; temperature scaling applies to classification runs"
        )
    manifest = Manifest.load(run_dir / "manifest.csv")
    if split not in manifest.splits:
        raise MedlensError(
            f"{run_dir}/manifest.csv has no {split!r} split (it has {manifest.splits}); "
            "calibration needs held-out cases the model did not train on"
        )
    classes = list(loaded.spec.class_names)
    data = prepare(
        manifest.subset(split), classes, loaded.spec.image_size, loaded.spec.channels, progress=progress
    )
    if len(set(data.targets.tolist())) < 2:
        raise MedlensError(f"the {split} split of {run_dir} holds a single class; cannot fit a temperature")
    logits = predict_logits(loaded, data.images)
    t = fit_temperature(logits, data.targets)
    n = len(data.targets)
    problem = temperature_problem(t)
    if problem:
        why = (
            "the model separates these cases perfectly, so the fit only sharpens without end"
            if t < 1
            else "the model's scores do not fit these cases, so the fit flattens every probability"
        )
        raise MedlensError(
            f"temperature scaling degenerated on the {n} cases of the {split} split of {run_dir}: {problem} "
            f"({why}); nothing stored: calibrate on a larger held-out split (--split), or keep the "
            "uncalibrated probabilities"
        )
    record = {
        "method": "temperature",
        "T": round(t, 6),
        "fit_on": split,
        "n": n,
        "fitted": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **before_after(data.targets, logits, t),
        "note": f"fitted on the {split} split: figures on it after calibration are in-sample",
    }
    if n < FEW_CASES:
        record["warning"] = (
            f"fitted on only {n} cases (fewer than {FEW_CASES}): T is poorly determined; "
            "calibrate on a larger held-out split when you have one"
        )
    write_json(path, record)
    return record


def calibration_flag(loaded, split: str) -> dict[str, Any] | None:
    """summary.json ``calibrated``: the run's temperature and what it was fitted on, or None."""
    if loaded.calibration is None:
        return None
    flag = {k: loaded.calibration[k] for k in ("method", "T", "fit_on")}
    if loaded.calibration.get("fit_on") == split:
        flag["note"] = f"the temperature was fitted on this {split} split: calibration here is in-sample"
    return flag


def before_after(y_true: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, Any]:
    """ECE, Brier and NLL of the raw and the temperature-scaled probabilities of the same cases."""
    keys = ("ece", "ece_equal_mass", "classwise_ece", "brier", "nll")
    raw = calibration_summary(y_true, softmax(logits))
    cal = calibration_summary(y_true, softmax(logits, temperature))
    return {"before": {k: raw[k] for k in keys}, "after": {k: cal[k] for k in keys}}
