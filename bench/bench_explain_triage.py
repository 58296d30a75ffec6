"""Explanations and the worklist (issue 11). Not a test: run by hand, paste into docs/benchmarks.md.

    .venv/bin/python bench/bench_explain_triage.py prepare-lgg cam ood triage simulate pointing

Needs the runs of bench/bench_calibration.py (``bench/out/cal-brain``: cnn-small on brain MRI, 128 px,
calibrated on val, with a held-out test split) and, for ``pointing``, ``bench/out/lgg-tumour-cls`` (cnn-small
tumour / no tumour on LGG slices from ``medlens convert masks-to-labels``, validation split by patient),
which ``prepare-lgg`` trains (about 4 minutes) when it is missing.

- ``cam``: Grad-CAM of one 128 px image after the model is loaded (median of 30), next to one plain forward
  pass of the same image in the same run.
- ``ood``: the share of 200 PneumoniaMNIST chest X-rays flagged out of distribution by the brain model,
  next to the share of the brain test split (never trained or selected on) flagged (false alarms).
- ``triage``: ``medlens.triage`` of 1 000 brain test images end to end (explanation PNGs included; the
  embedding index already built), next to ``medlens.predict`` of the same images in the same run.
- ``simulate``: the brain validation split (which chose the checkpoint and fitted the temperature) and the
  held-out test split as the day's list in a seeded random arrival order, urgent = any tumour class and
  glioma alone; one read every 5 min, all studies there at the start, and arrivals every 4 min.
- ``pointing``: pointing game, energy in mask and deletion AUC on the LGG validation patients for Grad-CAM,
  Grad-CAM++ and occlusion, with the centre and random-foreground-point baselines.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"
BRAIN_RUN = OUT / "cal-brain"
LGG_RUN = OUT / "lgg-tumour-cls"
LGG = DATA / "lgg-mri-segmentation" / "kaggle_3m"
PNEUMONIA = DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz"


def _split(name: str) -> pd.DataFrame:
    df = pd.read_csv(BRAIN_RUN / "manifest.csv")
    df = df[df["split"] == name].copy()
    df["image"] = [str((BRAIN_RUN / p).resolve()) for p in df["image"]]
    return df


def cam() -> dict:
    import torch

    from medlens.data.cache import load_image
    from medlens.explaining.cam import attribution_maps, cam_layer
    from medlens.models.checkpoint import load_model
    from medlens.tasks.base import channels_last, normalize

    loaded = load_model(BRAIN_RUN)
    image = load_image(_split("test")["image"].iloc[0], loaded.spec.image_size, loaded.spec.channels)
    x = channels_last(normalize(torch.from_numpy(image[None].copy()), loaded.spec))
    layer = cam_layer(loaded.name, loaded.model)
    times = {"gradcam": [], "forward": []}
    for i in range(33):
        t0 = time.perf_counter()
        attribution_maps(loaded.model, x, layer=layer, method="gradcam", target=[0])
        t1 = time.perf_counter()
        with torch.no_grad():
            loaded.model.eval()(x)
        t2 = time.perf_counter()
        if i >= 3:  # warm-up
            times["gradcam"].append(t1 - t0)
            times["forward"].append(t2 - t1)
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    return {
        "image_px": loaded.spec.image_size,
        "gradcam_ms": round(ms["gradcam"], 1),
        "forward_ms": round(ms["forward"], 1),
        "ratio": round(ms["gradcam"] / ms["forward"], 2),
        "threads": torch.get_num_threads(),
    }


def ood() -> dict:
    from PIL import Image

    import medlens

    with np.load(PNEUMONIA) as d:
        chest = d["val_images"][:200]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, img in enumerate(chest):
            p = Path(tmp) / f"chest_{i:03d}.png"
            Image.fromarray(img).save(p)
            paths.append(p)
        out = medlens.explain(BRAIN_RUN, paths, Path(tmp) / "o", write_png=False, progress=False)
    brain = _split("test")["image"].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        own = medlens.explain(BRAIN_RUN, brain, Path(tmp) / "o", write_png=False, progress=False)
    flagged = [c["ood"]["flag"] for c in out["cases"]]
    false_alarms = [c["ood"]["flag"] for c in own["cases"]]
    return {
        "chest_xrays": len(flagged),
        "chest_flagged": round(float(np.mean(flagged)), 4),
        "brain_test_images": len(false_alarms),
        "brain_test_flagged": round(float(np.mean(false_alarms)), 4),
        "threshold": out["index"]["ood_threshold"],
    }


def triage() -> dict:
    import medlens

    images = _split("test")["image"].tolist()
    images = images[:1000]  # the test split has 1 142 images
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "day.csv"
        pd.DataFrame({"image": images}).to_csv(csv, index=False)
        medlens.predict(BRAIN_RUN, images[:50])  # warm-up
        t0 = time.perf_counter()
        medlens.predict(BRAIN_RUN, images)
        t_predict = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = medlens.triage(BRAIN_RUN, [csv], Path(tmp) / "wl", progress=False)
        t_triage = time.perf_counter() - t0
        pngs = len(list((Path(tmp) / "wl" / "explanations").glob("*.png")))
    return {
        "images": len(result["rows"]),
        "pngs": pngs,
        "triage_s": round(t_triage, 1),
        "predict_s": round(t_predict, 1),
        "ratio": round(t_triage / t_predict, 2),
    }


def simulate() -> list[dict]:
    rows = []
    for split in ("val", "test"):
        rows += _simulate_split(split)
    return rows


def _simulate_split(split: str) -> list[dict]:
    import medlens

    day = _split(split).sample(frac=1.0, random_state=0)  # a seeded random arrival order
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / f"{split}.csv"
        day.to_csv(csv, index=False)
        for urgent in (None, ["glioma"]):
            for arrive in (0.0, 4.0):
                r = medlens.triage(
                    BRAIN_RUN,
                    [csv],
                    Path(tmp) / f"wl-{arrive}-{urgent}",
                    urgent=urgent,
                    explain=False,
                    evaluate=True,
                    read_every=5.0,
                    arrive_every=arrive,
                    progress=False,
                )
                ev = r["evaluation"]
                rows.append(
                    {
                        "split": split,
                        "urgent": ev["urgent"],
                        "arrive_every": arrive,
                        "n": ev["n"],
                        "n_urgent": ev["n_urgent"],
                        "median_medlens": ev["medlens"]["median"],
                        "median_fifo": ev["fifo"]["median"],
                        "mean_medlens": ev["medlens"]["mean"],
                        "mean_fifo": ev["fifo"]["mean"],
                        "auc": ev["auc"],
                    }
                )
    return rows


def prepare_lgg() -> dict:
    """The LGG tumour / no-tumour classifier ``pointing`` explains (skipped when it exists)."""
    import subprocess

    if (LGG_RUN / "model.pt").is_file():
        return {"run": str(LGG_RUN), "built": False}
    medlens = [sys.executable, "-m", "medlens"]
    labels = OUT / "lgg-labels.csv"
    subprocess.run([*medlens, "convert", "masks-to-labels", str(LGG), str(labels)], check=True)
    subprocess.run(
        [
            *medlens,
            "train",
            str(labels),
            "-o",
            str(LGG_RUN),
            "--model",
            "cnn-small",
            "--channels",
            "3",
            "--intensity",
            "image",
            "--overwrite",
            "--quiet",
        ],
        check=True,
    )
    return {"run": str(LGG_RUN), "built": True}


def pointing() -> dict:
    import medlens

    with tempfile.TemporaryDirectory() as tmp:
        r = medlens.explain(
            LGG_RUN, [], tmp, method="gradcam,gradcampp,occlusion", localisation=LGG, progress=False
        )
    loc = r["localisation"]
    keys = ("pointing_game", "energy_in_mask", "deletion_auc", "baseline_centre", "baseline_random")
    return {
        "n_slices": loc["n_slices"],
        "n_patients": loc["n_patients"],
        "by_method": {m: {k: b[k] for k in keys} for m, b in loc["by_method"].items()},
    }


def main(parts: list[str]) -> None:
    known = {
        "prepare-lgg": prepare_lgg,
        "cam": cam,
        "ood": ood,
        "triage": triage,
        "simulate": simulate,
        "pointing": pointing,
    }
    machine = platform.processor() or platform.machine()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.node()} {machine}")
    for part in parts or list(known):
        t0 = time.perf_counter()
        result = known[part]()
        print(json.dumps({"part": part, "seconds": round(time.perf_counter() - t0, 1), "result": result}))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
