"""Segmentation and detection benchmarks (issue 4) on the LGG FLAIR slices. Not a test: run by hand.

    .venv/bin/python bench/bench_segmentation.py lgg2d volumes lgg3d sw detection gate

- lgg2d: 2D U-Net on kaggle_3m slices, patient-level 80/20 split (seed 0); dice_patient and epoch time.
- volumes: `medlens convert slices-to-volumes` (one NIfTI per patient).
- lgg3d: 3D U-Net on the volumes (patches, sliding-window validation); dice_patient.
- sw: seconds per volume of medlens's sliding-window prediction vs MONAI's plain sliding_window_inference on
the
  same trained 3D model and the same validation volumes.
- detection: boxnet on the tumour slices (boxes from the masks); iou_mean.
- gate: a cnn-small tumour/no-tumour classifier trained on the lgg2d run's own train split, then the two-stage
  pipeline evaluated on the lgg2d validation patients (per-patient Dice, false-positive slices).

Each step runs the CLI in a fresh process and appends its figures to bench/out/segmentation.jsonl.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lgg-mri-segmentation" / "kaggle_3m"
OUT = ROOT / "bench" / "out"
MEDLENS = str(ROOT / ".venv" / "bin" / "medlens")
UNET3D = ["--model-arg", "channels=16,32,64,128", "--model-arg", "num_res_units=1"]

COMMANDS = {
    "lgg2d": [
        "train",
        DATA,
        "-o",
        OUT / "lgg-unet2d",
        "--task",
        "segmentation",
        "--model",
        "unet",
        "--epochs",
        "22",
        "--max-minutes",
        "10",
    ],
    "volumes": ["convert", "slices-to-volumes", DATA, OUT / "lgg-volumes"],
    "lgg3d": [
        "train",
        OUT / "lgg-volumes",
        "-o",
        OUT / "lgg-unet3d",
        "--task",
        "segmentation",
        "--model",
        "unet",
        *UNET3D,
        "--spacing",
        "2,2,1",
        "--patch-size",
        "64,64,32",
        "--samples-per-volume",
        "4",
        "--batch-size",
        "8",
        "--epochs",
        "40",
        "--max-minutes",
        "10",
    ],
    "detection": [
        "train",
        DATA,
        "-o",
        OUT / "lgg-boxnet",
        "--task",
        "detection",
        "--model",
        "boxnet",
        "--boxes-from-masks",
        "--epochs",
        "120",
        "--patience",
        "120",
        "--max-minutes",
        "10",
    ],
}


def cli(args: list) -> float:
    """Run one medlens command (replacing earlier outputs) and return its wall time."""
    flags = {"train": ["--quiet", "--overwrite"], "slices-to-volumes": ["--quiet", "--overwrite"]}
    t0 = time.perf_counter()
    subprocess.run(
        [MEDLENS, *map(str, args), *flags.get(str(args[0]), flags.get(str(args[1]), []))], check=True
    )
    return round(time.perf_counter() - t0, 1)


def run_summary(run: Path) -> dict:
    s = json.loads((run / "summary.json").read_text())
    t = json.loads((run / "train.json").read_text())
    import pandas as pd

    h = pd.read_csv(run / "history.csv")
    return {
        "split": s["split"],
        "n_cases": s["n_cases"],
        "n_patients": s.get("n_patients"),
        "metrics": {
            k: [
                round(v["value"], 4) if v["value"] is not None else None,
                [round(c, 4) for c in v["ci95"]] if v.get("ci95") else None,
            ]
            for k, v in s["metrics"].items()
        },
        "train_seconds": t["train_seconds"],
        "epochs": t["epochs_run"],
        "epoch_seconds_mean": round(float(h["seconds"].mean()), 1),
        "n_train": t["n_images"]["train"],
        "inference_seconds_per_case": s.get("inference_seconds_per_case"),
        "pipeline": s.get("pipeline"),
        "counts": s.get("counts"),
        "peak_memory_mb": t["peak_memory_mb"],
    }


def sliding_window_comparison(run: Path, repeats: int = 5) -> dict:
    """medlens predict_volume (raw volume → mask on the input grid) vs plain MONAI on the preprocessed
    tensor."""
    import numpy as np
    import torch
    from monai.inferers import sliding_window_inference

    from medlens.data.manifest import Manifest
    from medlens.evaluation.seg_metrics import segmentation_case_metrics
    from medlens.io.volumes import read_volume
    from medlens.models.checkpoint import load_model
    from medlens.tasks.volumes import predict_volume, preprocess_volume

    torch.set_num_threads(2)
    loaded = load_model(run)
    spec, model = loaded.spec, loaded.model.eval()
    manifest = Manifest.load(run / "manifest.csv").subset("val")
    times = {"medlens": [], "plain_defaults": [], "plain_same_settings": []}
    agreement = []
    for image in manifest.df["image"]:
        volume, _, spacing = read_volume(manifest.resolve(image))
        x = preprocess_volume(volume, spacing, spec)[None]  # plain MONAI gets this for free (not timed)

        def plain(sw: int, mode: str, x=x):
            with torch.no_grad():
                return sliding_window_inference(
                    x, spec.patch_size, sw, model, overlap=0.25, mode=mode
                ).argmax(1)

        runs = {
            "medlens": lambda volume=volume, spacing=spacing: predict_volume(model, spec, volume, spacing),
            "plain_defaults": lambda: plain(1, "constant"),
            "plain_same_settings": lambda: plain(4, "gaussian"),
        }
        for name, fn in runs.items():
            fn()  # warm-up
            t0 = time.perf_counter()
            for _ in range(repeats):
                result = fn()
            times[name].append((time.perf_counter() - t0) / repeats)
            if name == "medlens":
                ours = result
        low = plain(4, "gaussian")[0].numpy()
        up = torch.nn.functional.interpolate(
            torch.from_numpy(low[None, None]).float(), size=ours.shape, mode="nearest"
        )[0, 0].numpy()
        agreement.append(segmentation_case_metrics(ours, up)["dice"])
    mean = {k: round(float(np.mean(v)), 3) for k, v in times.items()}
    return {
        "volumes": len(manifest),
        "seconds_per_volume": mean,
        "ratio_vs_plain_defaults": round(mean["medlens"] / mean["plain_defaults"], 3),
        "ratio_vs_plain_same_settings": round(mean["medlens"] / mean["plain_same_settings"], 3),
        "dice_medlens_vs_plain_mask": round(float(np.mean(agreement)), 4),
        "settings": {
            "patch": list(spec.patch_size),
            "overlap": 0.25,
            "medlens_sw_batch": 4,
            "medlens_mode": "gaussian",
        },
    }


def gate() -> dict:
    """Classifier gate trained on the lgg2d run's own train patients; pipeline evaluated on its val
    patients."""
    seg = OUT / "lgg-unet2d"
    labels = OUT / "lgg-labels.csv"
    cli(["convert", "masks-to-labels", seg / "manifest.csv", labels])
    train_s = cli(
        [
            "train",
            labels,
            "-o",
            OUT / "lgg-gate",
            "--model",
            "cnn-small",
            "--channels",
            "3",
            "--intensity",
            "image",
        ]
    )
    subprocess.run(
        [
            MEDLENS,
            "evaluate",
            str(seg),
            "--gate",
            str(OUT / "lgg-gate"),
            "-o",
            str(OUT / "lgg-pipeline"),
            "--quiet",
        ],
        check=True,
    )
    s = json.loads((OUT / "lgg-pipeline" / "summary.json").read_text())
    g = json.loads((OUT / "lgg-gate" / "summary.json").read_text())
    return {
        "gate_train_seconds": train_s,
        "gate_val_accuracy": g["metrics"]["accuracy"]["value"],
        "dice_patient_with_gate": s["metrics"]["dice_patient"]["value"],
        "dice_patient_ci": s["metrics"]["dice_patient"]["ci95"],
        "pipeline": s["pipeline"],
    }


def main(steps: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {platform.processor()}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
    }
    for step in steps:
        record = {"step": step, **meta}
        if step in COMMANDS:
            record["command"] = "medlens " + " ".join(map(str, COMMANDS[step])).replace(str(ROOT) + "/", "")
            record["wall_seconds"] = cli(COMMANDS[step])
            if step != "volumes":
                record.update(run_summary(Path(COMMANDS[step][3])))
        elif step == "sw":
            record.update(sliding_window_comparison(OUT / "lgg-unet3d"))
        elif step == "gate":
            record.update(gate())
        else:
            raise SystemExit(f"unknown step {step!r}; use {', '.join([*COMMANDS, 'sw', 'gate'])}")
        print(json.dumps(record, indent=1))
        with open(OUT / "segmentation.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["lgg2d", "volumes", "lgg3d", "sw", "detection", "gate"])
