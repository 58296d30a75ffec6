"""Speed of the clinical evaluation after inference (issue 10): 1 311 cases, 4 classes, 1 000 bootstrap
resamples, every analysis on (calibration, operating points, DeLong, cohorts on two columns, three readers,
patient level, model card and report figures). Not a test: run by hand, paste into docs/benchmarks.md.

    .venv/bin/python bench/bench_clinical_eval.py

The probabilities are simulated (a 4-class model of ~93 % accuracy, 2 cases per patient) so the figure
measures the analysis alone; the baseline in the same run is the evaluation before this issue
(classification_metrics with its bootstrap, the ECE and three figures).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medlens.evaluation import plots
from medlens.evaluation.calibration import calibration_summary
from medlens.evaluation.clinical import ClinicalOptions, classification_analyses
from medlens.evaluation.metrics import calibration, classification_metrics
from medlens.evaluation.readers import simulate_readers

N, CLASSES = 1311, ["glioma", "meningioma", "notumor", "pituitary"]


def simulated(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, N)
    logits = rng.normal(0, 1, (N, 4))
    logits[np.arange(N), y] += 3.2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    patients = np.array([f"p{i // 2}" for i in range(N)])
    df = pd.DataFrame({"case_id": [f"c{i}" for i in range(N)], "patient_id": patients})
    by_patient = {p: (rng.choice(["F", "M"]), int(rng.integers(20, 85))) for p in np.unique(patients)}
    df["sex"] = [by_patient[p][0] for p in patients]
    df["age"] = [by_patient[p][1] for p in patients]
    return df, y, probs


def baseline(y, probs, groups, folder: Path) -> None:
    r = classification_metrics(y, probs, CLASSES, n_bootstrap=1000, seed=0, groups=groups)
    plots.plot_confusion_matrix(r["confusion_matrix"], CLASSES, folder / "cm.png")
    plots.plot_roc(y, probs, CLASSES, folder / "roc.png")
    plots.plot_reliability(calibration(y, probs), folder / "rel.png")


def full(df, y, probs, groups, readers_csv: Path, folder: Path) -> dict:
    baseline(y, probs, groups, folder)
    calibration_summary(y, probs)
    opts = ClinicalOptions(cohorts="sex,age:<40,40-60,>60", readers=readers_csv)
    t0 = time.perf_counter()
    out, _ = classification_analyses(
        df, y, probs, CLASSES, opts, n_bootstrap=1000, groups=groups, operating_point=None, figures=folder
    )
    return {"analyses_s": time.perf_counter() - t0, "keys": sorted(out)}


def main() -> None:
    df, y, probs = simulated()
    groups = df["patient_id"].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        readers = simulate_readers(y, CLASSES, {"r1": 0.95, "r2": 0.85, "r3": 0.7}, case_ids=df["case_id"])
        readers.to_csv(folder / "readers.csv", index=False)
        baseline(y, probs, groups, folder)  # warm-up (imports, font cache)
        rows = []
        for _ in range(3):
            t0 = time.perf_counter()
            baseline(y, probs, groups, folder)
            t_base = time.perf_counter() - t0
            t0 = time.perf_counter()
            info = full(df, y, probs, groups, folder / "readers.csv", folder)
            t_full = time.perf_counter() - t0
            rows.append((t_base, t_full, info["analyses_s"]))
    base, tot, ana = (float(np.median([r[i] for r in rows])) for i in range(3))
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
                "cases": N,
                "baseline_s": round(base, 2),
                "full_s": round(tot, 2),
                "clinical_analyses_s": round(ana, 2),
                "ratio_full_to_baseline": round(tot / base, 2),
                "analyses": info["keys"],
            }
        )
    )


if __name__ == "__main__":
    main()
