"""Classification benchmarks (issue 2). Not a test: run by hand, paste the table into docs/benchmarks.md.

    .venv/bin/python bench/bench_classification.py brain-cnn brain-logreg pneumonia-cnn ...

Each entry runs `medlens train` in a fresh process (so peak memory is per run) and reads the run's
summary.json / train.json. Every figure names its split.
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

RUNS = {
    "brain-cnn": [BRAIN, "--model", "cnn-small"],
    "brain-logreg": [BRAIN, "--model", "logreg", "--image-size", "64", "--epochs", "30", "--no-augment"],
    "brain-effnet-frozen": [
        BRAIN,
        "--model",
        "efficientnet-lite0",
        "--freeze-backbone",
        "--head",
        "mlp",
        "--dropout",
        "0.2",
        "--image-size",
        "128",
        "--epochs",
        "8",
    ],
    "brain-effnet-finetune": [
        BRAIN,
        "--model",
        "efficientnet-lite0",
        "--image-size",
        "128",
        "--epochs",
        "5",
        "--lr",
        "1e-3",
    ],
    "pneumonia-cnn": [PNEUMONIA, "--model", "cnn-small", "--image-size", "28", "--epochs", "20"],
    "pneumonia-logreg": [
        PNEUMONIA,
        "--model",
        "logreg",
        "--image-size",
        "28",
        "--epochs",
        "30",
        "--no-augment",
    ],
}


def run(name: str) -> dict:
    args = [str(a) for a in RUNS[name]]
    out = OUT / name
    cmd = [str(ROOT / ".venv" / "bin" / "medlens"), "train", *args, "-o", str(out), "--overwrite", "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    t = json.loads((out / "train.json").read_text())
    m = s["metrics"]
    auc = m.get("auc") or m.get("auc_ovr") or {}
    return {
        "name": name,
        "command": "medlens train "
        + " ".join(args[:1]).replace(str(DATA), "../shared/data")
        + " "
        + " ".join(args[1:]),
        "split": s["split"],
        "n_cases": s["n_cases"],
        "accuracy": m["accuracy"]["value"],
        "accuracy_ci": m["accuracy"]["ci95"],
        "macro_f1": m["macro_f1"]["value"],
        "auc": auc.get("value"),
        "auc_ci": auc.get("ci95"),
        "train_seconds": t["train_seconds"],
        "epochs": t["epochs_run"],
        "images_per_second": t["images_per_second"],
        "peak_memory_mb": t["peak_memory_mb"],
        "wall_seconds_total": round(wall, 1),
        "n_train": t["n_images"]["train"],
        "skipped": len(t["skipped"]),
    }


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    results = [run(n) for n in (names or list(RUNS))]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {platform.processor() or ''} "
        f"{__import__('os').cpu_count()} cores, {platform.python_version()}",
    }
    (OUT / "classification.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    columns = (
        "run",
        "split (n)",
        "accuracy [95% CI]",
        "macro-F1",
        "AUC [95% CI]",
        "train s (epochs)",
        "img/s",
    )
    print("| " + " | ".join((*columns, "peak MB")) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        auc = f"{r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]" if r["auc"] is not None else "-"
        acc = f"{r['accuracy']:.3f} [{r['accuracy_ci'][0]:.3f}, {r['accuracy_ci'][1]:.3f}]"
        print(
            f"| {r['name']} | {r['split']} ({r['n_cases']}) | {acc} | {r['macro_f1']:.3f} | {auc} | "
            f"{r['train_seconds']:.0f} ({r['epochs']}) | {r['images_per_second']} | "
            f"{r['peak_memory_mb']:.0f} |"
        )
    print(json.dumps(meta))


if __name__ == "__main__":
    main(sys.argv[1:])
