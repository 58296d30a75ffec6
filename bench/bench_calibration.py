"""Calibration before and after temperature scaling (issue 10). Not a test: run by hand, paste into
docs/benchmarks.md.

    .venv/bin/python bench/bench_calibration.py prepare train calibrate

``prepare`` holds out a stratified 20 % of each source as a ``test`` split that training never sees (brain
MRI: of the 5 708 Training images; PneumoniaMNIST: of the official train split, the official val split stays
val). ``train`` trains cnn-small on the rest (medlens carves its own validation split from train for the
brain set). ``calibrate`` evaluates each run on val and test, runs ``medlens calibrate`` (temperature fitted
on val), evaluates again, and appends one JSON line per run to ``bench/out/calibration.jsonl``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"
BRAIN = DATA / "brain-tumor-mri" / "Training"
PNEUMONIA = DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz"
MEDLENS = [sys.executable, "-m", "medlens"]

RUNS = {
    "brain": (OUT / "cal-brain.csv", ["--model", "cnn-small"]),
    "pneumonia": (
        OUT / "cal-pneumonia.csv",
        ["--model", "cnn-small", "--image-size", "28", "--epochs", "20"],
    ),
}


def prepare() -> None:
    """Write the two manifests with a held-out ``test`` split (20 % of train, stratified, seed 1)."""
    from sklearn.model_selection import train_test_split

    from medlens import ingest

    OUT.mkdir(parents=True, exist_ok=True)
    for name, src in (("brain", BRAIN), ("pneumonia", PNEUMONIA)):
        m = ingest(src)
        df = m.df.copy()
        df.loc[df["split"] == "", "split"] = "train"
        pool = df.index[df["split"] == "train"]
        _, test = train_test_split(pool, test_size=0.2, random_state=1, stratify=df.loc[pool, "label"])
        df.loc[test, "split"] = "test"
        df["image"] = [
            p if Path(str(p).split("::")[0]).is_absolute() else str(m.root / p) for p in df["image"]
        ]
        path, _ = RUNS[name]
        df.to_csv(path, index=False)
        print(name, df["split"].value_counts().to_dict(), "->", path)


def train() -> None:
    for name, (manifest, args) in RUNS.items():
        run = OUT / f"cal-{name}"
        t0 = time.time()
        subprocess.run([*MEDLENS, "train", str(manifest), "-o", str(run), "--overwrite", *args], check=True)
        print(name, f"trained in {time.time() - t0:.0f} s")


def calibrate() -> None:
    rows = []
    for name in RUNS:
        run = OUT / f"cal-{name}"
        (run / "calibration.json").unlink(missing_ok=True)
        row: dict = {"run": name, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor()}
        for stage in ("before", "after"):
            if stage == "after":
                subprocess.run([*MEDLENS, "calibrate", str(run)], check=True)
            for split in ("val", "test"):
                out = OUT / f"cal-{name}-{stage}-{split}"
                subprocess.run(
                    [*MEDLENS, "evaluate", str(run), "--split", split, "-o", str(out), "--quiet"], check=True
                )
                s = json.loads((out / "summary.json").read_text())
                cal = s["calibration"]
                row[f"{stage}_{split}"] = {
                    "n": s["n_cases"],
                    "ece": round(cal["ece"], 4),
                    "ece_equal_mass": round(cal.get("ece_equal_mass", float("nan")), 4),
                    "classwise_ece": round(cal.get("classwise_ece", float("nan")), 4),
                    "brier": round(cal.get("brier", float("nan")), 4),
                    "nll": round(cal.get("nll", float("nan")), 4),
                    "accuracy": round(s["metrics"]["accuracy"]["value"], 4),
                }
        row["calibrated"] = json.loads((run / "calibration.json").read_text())
        rows.append(row)
        print(json.dumps(row))
    with open(OUT / "calibration.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    steps = {"prepare": prepare, "train": train, "calibrate": calibrate}
    for step in sys.argv[1:] or ["prepare", "train", "calibrate"]:
        steps[step]()
