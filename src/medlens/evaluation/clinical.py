"""The clinical analyses `medlens evaluate` adds to a task's metrics: operating points, cohorts and fairness,
readers vs model, patient-level metrics (see docs/evaluation.md).

Each analysis is a function of the cases' truth and scores that returns a JSON-ready block of summary.json
plus its figures, so the CLI, the Python API and the web service all get the same numbers from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.errors import MedlensError
from medlens.evaluation.clinical_plots import plot_operating_curves
from medlens.evaluation.cohort_plots import plot_fairness_heatmap
from medlens.evaluation.cohorts import (
    attach_metadata,
    cohort_analysis,
    load_metadata,
    parse_cohorts,
    resolve_column,
)
from medlens.evaluation.metrics import classification_metrics
from medlens.evaluation.operating_points import (
    curves,
    delong_per_class,
    operating_points,
    positive_classes,
    wilson,
)
from medlens.evaluation.reader_plots import plot_readers_roc
from medlens.evaluation.readers import load_readers, reader_study
from medlens.evaluation.seg_metrics import patient_bootstrap_ci

PATIENT_AGGREGATIONS = ("max", "mean")


@dataclass
class ClinicalOptions:
    """What `medlens evaluate` was asked for beyond the task's metrics (all optional).

    Attributes:
        positive: the positive class of the operating points and reader sensitivities (default: the second
            class of a binary task, every class one-vs-rest of a multiclass one).
        threshold: store this operating point in the run (then ``predict`` uses it).
        cohorts: ``COL[,COL]`` with optional bins, e.g. ``gender,age:<40,40-60,>60``.
        metadata: a CSV joined on patient_id (kaggle_3m's own data.csv is already in its manifest).
        min_cell: cohorts with fewer patients are censored.
        reference: the fairness reference group (default: the largest).
        readers: a CSV of (case_id, reader, label or probability).
        patient_agg: how a patient's case probabilities make the patient's: ``max`` or ``mean``.
    """

    positive: str | None = None
    threshold: float | None = None
    cohorts: str | None = None
    metadata: Path | None = None
    min_cell: int = 10
    reference: str | None = None
    readers: Path | None = None
    patient_agg: str = "max"

    def check(self) -> None:
        """Refuse bad values before any inference runs."""
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise MedlensError(f"--threshold must be between 0 and 1 (exclusive), got {self.threshold}")
        if self.min_cell < 1:
            raise MedlensError(f"--min-cell must be at least 1, got {self.min_cell}")
        if self.patient_agg not in PATIENT_AGGREGATIONS:
            raise MedlensError(
                f"--patient-agg must be one of {PATIENT_AGGREGATIONS}, got {self.patient_agg!r}"
            )
        for name, path in (("--metadata", self.metadata), ("--readers", self.readers)):
            if path is not None and not Path(path).is_file():
                raise MedlensError(f"{name} file {path} not found; give the path of a CSV file")
        if self.cohorts:
            parse_cohorts(self.cohorts)

    def check_data(self, cases: pd.DataFrame, class_names: list[str] | None) -> None:
        """Refuse unknown cohort columns and a bad readers file before inference runs (fail fast)."""
        if self.cohorts:
            table = attach_metadata(cases, load_metadata(self.metadata) if self.metadata else None)
            for spec in parse_cohorts(self.cohorts):
                resolve_column(table, spec.column)
        if self.readers and class_names:
            load_readers(self.readers, class_names)


# -- classification ----------------------------------------------------------------------------------
def classification_analyses(
    df: pd.DataFrame,
    targets: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    opts: ClinicalOptions,
    *,
    n_bootstrap: int,
    groups: np.ndarray | None,
    operating_point: dict | None,
    figures: Path,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Operating points, DeLong AUC, cohorts, readers and patient-level metrics of a classifier's cases.

    Args:
        df: one row per case (``case_id``, ``patient_id`` and any manifest columns), aligned with targets.
        targets: true class index per case.
        probs: (calibrated) class probabilities per case.
        classes: class names in column order.
        opts: what was asked for.
        n_bootstrap: resamples of every bootstrap interval.
        groups: patient id per case when patients have several cases, else None.
        operating_point: the run's chosen ``{"class", "threshold"}`` or None.
        figures: the folder for PNGs.

    Returns:
        ``(summary keys, figures)``.
    """
    positive = positive_classes(classes, opts.positive)
    out: dict[str, Any] = {
        "operating_points": operating_points(targets, probs, classes, positive=opts.positive),
        "auc_delong": delong_per_class(targets, probs, classes, positive=opts.positive),
    }
    curve_data = curves(targets, probs, classes, positive=opts.positive)
    out["curves"] = {c: {k: v for k, v in d.items() if k == "pr"} for c, d in curve_data.items()}
    figs = {"Operating points": plot_operating_curves(curve_data, figures / "operating_points.png")}
    if operating_point is not None and operating_point.get("class") in classes:
        rows = operating_points(
            targets,
            probs,
            classes,
            positive=operating_point["class"],
            grid=[float(operating_point["threshold"])],
        )
        out["operating_point"] = {**operating_point, "row": next(r for r in rows if r["target"] is None)}
    if opts.cohorts:
        table = attach_metadata(
            df.reset_index(drop=True), load_metadata(opts.metadata) if opts.metadata else None
        )
        scorer = _classification_scorer(targets, probs, classes, positive, n_bootstrap, groups)
        out["cohorts"] = cohort_analysis(
            table,
            parse_cohorts(opts.cohorts),
            scorer,
            min_cell=opts.min_cell,
            reference=opts.reference,
        )
        heat = plot_fairness_heatmap(out["cohorts"], figures / "fairness.png")
        if heat is not None:
            figs["Cohorts and fairness"] = heat
    if opts.readers:
        readers = load_readers(opts.readers, classes)
        threshold = None
        if operating_point is not None and operating_point.get("class") in classes:
            threshold = {classes.index(operating_point["class"]): float(operating_point["threshold"])}
        case_ids = df["case_id"].astype(str).tolist()
        study = reader_study(
            case_ids, targets, probs, classes, readers, positive=positive, threshold=threshold
        )
        out["readers"] = study
        for c in positive:
            figs[f"Readers vs model ({classes[c]})"] = plot_readers_roc(
                targets, probs, classes, study, c, figures / f"readers_{_safe(classes[c])}.png"
            )
    if groups is not None:
        out["patient_level"] = patient_level(
            targets, probs, classes, groups, agg=opts.patient_agg, n_bootstrap=n_bootstrap
        )
    return out, figs


def patient_level(
    targets: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    patients: np.ndarray,
    *,
    agg: str = "max",
    n_bootstrap: int = 1000,
) -> dict[str, Any]:
    """Metrics with one score per patient, next to the case-level ones.

    Binary: the patient's probability of the positive class is the max (or mean) over their cases, and the
    patient is positive when any case is. Multiclass: the patient's probabilities are the mean of their
    cases' (``max``: each class's max, renormalised), and the patient's class is their cases' most common
    one. Every patient is one unit of the bootstrap, so the intervals resample patients (a cluster bootstrap).
    """
    codes, index = pd.factorize(pd.Series(patients).astype(str))
    n_patients = len(index)
    k = probs.shape[1]
    if k == 2:
        pos = _aggregate(probs[:, 1], codes, n_patients, agg)
        p_probs = np.stack([1 - pos, pos], axis=1)
        p_targets = np.bincount(codes, weights=(targets == 1), minlength=n_patients) > 0
        p_targets = p_targets.astype(np.int64)
        rule = f"patient probability = {agg} over its cases; patient positive when any case is"
    else:
        p_probs = np.stack([_aggregate(probs[:, c], codes, n_patients, agg) for c in range(k)], axis=1)
        p_probs = p_probs / p_probs.sum(axis=1, keepdims=True)
        counts = np.zeros((n_patients, k))
        np.add.at(counts, (codes, targets), 1)
        p_targets = counts.argmax(axis=1)
        rule = f"patient probabilities = {agg} over its cases (renormalised); patient class = most common"
    result = classification_metrics(p_targets, p_probs, classes, n_bootstrap=n_bootstrap, seed=0)
    return {
        "aggregation": agg,
        "rule": rule,
        "n_patients": int(n_patients),
        "metrics": result["metrics"],
        "bootstrap": {**result["bootstrap"], "method": f"percentile, {n_patients} patients resampled"},
    }


def _aggregate(values: np.ndarray, codes: np.ndarray, n: int, agg: str) -> np.ndarray:
    if agg == "mean":
        return np.bincount(codes, weights=values, minlength=n) / np.bincount(codes, minlength=n)
    out = np.full(n, -np.inf)
    np.maximum.at(out, codes, values)
    return out


def _classification_scorer(targets, probs, classes, positive, n_bootstrap, groups):
    """score(idx) for the cohort analysis: accuracy, macro-F1, AUC (bootstrap CIs over the cohort's
    patients) and per-class sensitivity (Wilson CIs); prevalence of the (first) positive class."""
    auc_name = "auc" if len(classes) == 2 else "auc_ovr"

    def score(idx: np.ndarray) -> dict[str, Any]:
        y, p = targets[idx], probs[idx]
        g = None if groups is None else groups[idx]
        out: dict[str, Any] = {}
        if len(set(y.tolist())) >= 1 and len(idx) >= 2:
            m = classification_metrics(y, p, classes, n_bootstrap=n_bootstrap, seed=0, groups=g)["metrics"]
            for name in ("accuracy", "macro_f1", auc_name):
                out[name] = {"value": m[name]["value"], "ci95": m[name]["ci95"]}
        pred = p.argmax(axis=1)
        for c in positive:
            n_pos = int((y == c).sum())
            hits = int(((y == c) & (pred == c)).sum())
            lo, hi = wilson(np.array([hits]), np.array([n_pos]))
            out[f"sensitivity_{classes[c]}"] = {
                "value": hits / n_pos if n_pos else None,
                "ci95": [float(lo[0]), float(hi[0])] if n_pos else None,
            }
        out["prevalence"] = float(np.mean(y == positive[0]))
        out["n_patients"] = len(set(g.tolist())) if g is not None else len(idx)
        return out

    return score


# -- segmentation and detection ------------------------------------------------------------------------
def localisation_cohorts(
    df: pd.DataFrame,
    cases: list[dict],
    opts: ClinicalOptions,
    *,
    metric: str,
    n_bootstrap: int,
    figures: Path,
    per_patient: dict[str, float] | None = None,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Cohorts of a segmentation (``metric="dice"``) or detection (``metric="iou"``) evaluation: per cohort,
    the mean per-patient metric (``per_patient``, e.g. the Dice of each patient's stacked slices), the mean
    per-case metric over all cases and over cases with a lesion, each with an interval resampling the
    cohort's patients, and the fairness audit."""
    if not opts.cohorts:
        return {}, {}
    table = attach_metadata(
        df.reset_index(drop=True), load_metadata(opts.metadata) if opts.metadata else None
    )
    values = np.array([np.nan if c.get(metric) is None else float(c[metric]) for c in cases])
    has_fg = np.array([int(c.get("foreground_true", 0) or 0) > 0 for c in cases])
    pids = np.array([str(c["patient_id"]) for c in cases])

    def score(idx: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if per_patient:
            who = sorted(set(pids[idx].tolist()) & set(per_patient))
            pv = np.array([per_patient[p] for p in who], dtype=np.float64)
            out[f"{metric}_patient"] = {
                "value": float(pv.mean()) if pv.size else None,
                "ci95": patient_bootstrap_ci(pv, who, n_bootstrap=n_bootstrap),
            }
        v = values[idx]
        defined = v[~np.isnan(v)]
        out[f"{metric}_case"] = {
            "value": float(defined.mean()) if defined.size else None,
            "ci95": patient_bootstrap_ci(v, pids[idx], n_bootstrap=n_bootstrap),
        }
        fg = idx[has_fg[idx]]
        if fg.size:
            vf = values[fg]
            out[f"{metric}_case_with_lesion"] = {
                "value": float(np.nanmean(vf)) if np.isfinite(vf).any() else None,
                "ci95": patient_bootstrap_ci(vf, pids[fg], n_bootstrap=n_bootstrap),
            }
        out["prevalence"] = float(has_fg[idx].mean())
        out["n_patients"] = len(set(pids[idx].tolist()))
        return out

    block = cohort_analysis(
        table, parse_cohorts(opts.cohorts), score, min_cell=opts.min_cell, reference=opts.reference
    )
    figs = {}
    heat = plot_fairness_heatmap(block, figures / "fairness.png")
    if heat is not None:
        figs["Cohorts and fairness"] = heat
    return {"cohorts": block}, figs


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)[:40]
