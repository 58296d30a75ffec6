"""medlens defaults against a plain hand-written PyTorch script (bench/plain_script.py), side by side, on the
same train rows and the same held-out test rows. Not a test: run by hand, paste into docs/benchmarks.md.

    .venv/bin/python bench/bench_defaults.py prepare
    .venv/bin/python bench/bench_defaults.py run brain pneumonia lgg-tumour brain3-64 [--seconds S]

``prepare`` writes, for each dataset NAME, into ``bench/out/defaults/``: ``NAME-medlens.csv`` (a medlens
manifest case_id,patient_id,split,image,label; split ``train`` or ``test``: medlens carves its own validation
from train and never trains on test) and ``NAME-train.csv`` / ``NAME-test.csv`` (image,label, the same rows)
for the plain script.

- brain: the 5 708 brain-tumour MRI Training images, 4 classes; the stratified 20 % test split of
  bench_calibration.py (taken from bench/out/cal-brain.csv, rebuilt the same way when that file is missing).
- pneumonia: PneumoniaMNIST; official train = train, official val = test (never trained or selected on).
- lgg-tumour: LGG FLAIR slices, tumour (any mask pixel) / none; 20 % of patients are test.
- brain3-64: glioma / meningioma / pituitary of brain, downsized to 64 px PNGs; stratified 20 % test.

``run`` trains medlens with no training options at all (``medlens train MANIFEST -o RUN``), then the plain
script for the same wall-clock seconds (medlens's train_seconds unless --seconds) at medlens's image size
(28 for pneumonia), and appends one JSON line per dataset to ``bench/out/defaults/results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data") if Path("/work/shared/data").is_dir() else ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out" / "defaults"
BRAIN = DATA / "brain-tumor-mri" / "Training"
CAL_BRAIN = ROOT / "bench" / "out" / "cal-brain.csv"
PNEUMONIA = DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz"
PNEUMONIA_NAMES = ("normal", "pneumonia")  # medlens's MedMNIST names (src/medlens/data/sources/npz.py)
LGG = DATA / "lgg-mri-segmentation" / "kaggle_3m"
MEDLENS = ROOT / ".venv" / "bin" / "medlens"
PLAIN = ROOT / "bench" / "plain_script.py"
DATASETS = ("brain", "pneumonia", "lgg-tumour", "brain3-64")
RGB = {"lgg-tumour"}  # the plain script reads these 3-channel images as RGB
COLUMNS = ["case_id", "patient_id", "split", "image", "label"]


# ---------------------------------------------------------------------------------------------- prepare
def _stratified_test(labels: pd.Series) -> pd.Series:
    """Split column: a stratified 20 % ``test`` (random_state=1), the rest ``train``."""
    from sklearn.model_selection import train_test_split

    _, test = train_test_split(labels.index, test_size=0.2, random_state=1, stratify=labels)
    split = pd.Series("train", index=labels.index)
    split[test] = "test"
    return split


def brain_manifest() -> pd.DataFrame:
    """bench_calibration.py's brain manifest: medlens ingest's row order, stratified 20 % test."""
    if CAL_BRAIN.is_file():
        df = pd.read_csv(CAL_BRAIN, dtype=str, keep_default_na=False)
    else:  # rebuild exactly as bench_calibration.py prepare does
        from medlens import ingest

        m = ingest(BRAIN)
        df = m.df.copy()
        df.loc[df["split"] == "", "split"] = "train"
        df["image"] = [p if Path(str(p)).is_absolute() else str(m.root / p) for p in df["image"]]
        df["split"] = _stratified_test(df["label"])
    if set(df["split"]) != {"train", "test"}:
        raise SystemExit(f"{CAL_BRAIN}: expected splits train/test, got {sorted(set(df['split']))}")
    return df[COLUMNS]


def pneumonia_manifest() -> pd.DataFrame:
    """Official train -> train, official val -> test; images as medlens names them (``f.npz::key[i]``)."""
    frames = []
    with np.load(PNEUMONIA, allow_pickle=False) as data:
        for official, split in (("train", "train"), ("val", "test")):
            labels = data[f"{official}_labels"].reshape(-1)
            ids = [f"{official}-{i}" for i in range(len(labels))]
            frames.append(
                pd.DataFrame(
                    {
                        "case_id": ids,
                        "patient_id": ids,
                        "split": split,
                        "image": [f"{PNEUMONIA}::{official}_images[{i}]" for i in range(len(labels))],
                        "label": [PNEUMONIA_NAMES[int(v)] for v in labels],
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def lgg_manifest() -> pd.DataFrame:
    """Every LGG slice: ``tumour`` if its mask has a nonzero pixel, else ``none``; 20 % of patients test."""
    from PIL import Image
    from sklearn.model_selection import GroupShuffleSplit

    rows = []
    for patient in sorted(p for p in LGG.iterdir() if p.is_dir()):
        slices = [f for f in patient.glob("*.tif") if not f.stem.endswith("_mask")]
        for f in sorted(slices, key=lambda f: int(f.stem.rsplit("_", 1)[1])):
            mask = np.asarray(Image.open(f.with_name(f"{f.stem}_mask.tif")))
            label = "tumour" if mask.any() else "none"
            rows.append({"case_id": f.stem, "patient_id": patient.name, "image": str(f), "label": label})
    df = pd.DataFrame(rows)
    _, test = next(
        GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=1).split(df, groups=df["patient_id"])
    )
    df["split"] = "train"
    df.loc[df.index[test], "split"] = "test"
    return df[COLUMNS]


def brain3_manifest(brain: pd.DataFrame) -> pd.DataFrame:
    """glioma / meningioma / pituitary of brain (its row order), as 64 px PNGs; stratified 20 % test."""
    from PIL import Image

    df = brain[brain["label"].isin(["glioma", "meningioma", "pituitary"])].reset_index(drop=True).copy()
    images = []
    for src, label in zip(df["image"], df["label"]):
        dst = OUT / "brain3-64" / label / f"{Path(src).stem}.png"
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(src) as im:
                im.resize((64, 64), Image.BILINEAR).save(dst)
        images.append(str(dst))
    df["image"] = images
    df["split"] = _stratified_test(df["label"])
    return df[COLUMNS]


def _plain_image(ref: str) -> str:
    """The plain script's npz reference ``f.npz::key::index`` for medlens's ``f.npz::key[index]``."""
    if "::" in ref and ref.endswith("]"):
        path, rest = ref.split("::", 1)
        key, index = rest[:-1].split("[")
        return f"{path}::{key}::{index}"
    return ref


def prepare() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    brain = brain_manifest()
    manifests = {
        "brain": brain,
        "pneumonia": pneumonia_manifest(),
        "lgg-tumour": lgg_manifest(),
        "brain3-64": brain3_manifest(brain),
    }
    for name, df in manifests.items():
        if df["case_id"].duplicated().any():
            raise SystemExit(f"{name}: duplicate case ids")
        df.to_csv(OUT / f"{name}-medlens.csv", index=False)
        for split in ("train", "test"):
            part = df[df["split"] == split]
            plain = pd.DataFrame({"image": part["image"].map(_plain_image), "label": part["label"]})
            plain.to_csv(OUT / f"{name}-{split}.csv", index=False)
        counts = df.groupby(["split", "label"]).size().unstack(fill_value=0)
        patients = df.groupby("split")["patient_id"].nunique().to_dict()
        print(f"{name}: {len(df)} rows, patients per split {patients} -> {OUT / f'{name}-medlens.csv'}")
        print(counts.to_string(), "\n")


# -------------------------------------------------------------------------------------------------- run
def _value(metrics: dict, *names: str) -> float | None:
    for n in names:
        if n in metrics:
            v = metrics[n]
            return float(v["value"] if isinstance(v, dict) else v)
    return None


def medlens_metrics(run: Path, n_test: int) -> dict:
    """Test-split accuracy / macro-F1 / AUC from RUN/summary.json, train seconds and spec from train.json."""
    summary = json.loads((run / "summary.json").read_text())
    train = json.loads((run / "train.json").read_text())
    metrics = summary.get("metrics") or {}
    acc = _value(metrics, "accuracy")
    f1 = _value(metrics, "macro_f1", "f1_macro")
    auc = _value(metrics, "auc", "auc_ovr", "macro_auc", "auc_macro")
    if summary.get("split") != "test" or None in (acc, f1, auc):
        raise SystemExit(
            f"{run / 'summary.json'} has no test-split metrics: split={summary.get('split')!r}, "
            f"metrics keys {sorted(metrics)}, top-level keys {sorted(summary)}"
        )
    if summary.get("n_cases") != n_test:
        print(f"warning: {run} scored {summary.get('n_cases')} test cases, the manifest has {n_test}")
    spec = train.get("spec") or {}
    return {
        "accuracy": acc,
        "macro_f1": f1,
        "auc": auc,
        "n_test": summary.get("n_cases"),
        "train_seconds": train.get("train_seconds"),
        "epochs": train.get("epochs_run"),
        "image_size": spec.get("image_size"),
        "channels": spec.get("channels"),
        "model": (summary.get("model") or {}).get("name"),
        "classes": summary.get("class_names"),
    }


def _fmt(side: dict) -> str:
    return " / ".join(
        "-" if side.get(k) is None else f"{side[k]:.4f}" for k in ("accuracy", "macro_f1", "auc")
    )


def run_one(name: str, seconds: float | None) -> dict:
    manifest = OUT / f"{name}-medlens.csv"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} is missing: run `bench/bench_defaults.py prepare` first")
    n_test = int((pd.read_csv(manifest, usecols=["split"], dtype=str)["split"] == "test").sum())
    run = OUT / f"run-{name}"
    medlens_cmd = [str(MEDLENS), "train", str(manifest), "-o", str(run), "--overwrite", "--quiet"]
    t0 = time.time()
    subprocess.run(medlens_cmd, check=True, cwd=ROOT)
    medlens_wall = time.time() - t0
    ml = medlens_metrics(run, n_test)
    ml["wall_seconds"] = round(medlens_wall, 1)

    size = 28 if name == "pneumonia" else ml["image_size"]
    budget = seconds if seconds is not None else ml["train_seconds"]
    plain_out = OUT / f"plain-{name}.json"
    plain_cmd = [sys.executable, str(PLAIN), "--train", str(OUT / f"{name}-train.csv")]
    plain_cmd += ["--test", str(OUT / f"{name}-test.csv"), "--size", str(size), "--seconds", str(budget)]
    plain_cmd += ["--seed", "0", "--out", str(plain_out), *(["--rgb"] if name in RGB else [])]
    t0 = time.time()
    subprocess.run(plain_cmd, check=True, cwd=ROOT)
    plain = json.loads(plain_out.read_text())
    plain["wall_seconds"] = round(time.time() - t0, 1)

    better = all(
        ml.get(k) is not None and plain.get(k) is not None and ml[k] > plain[k]
        for k in ("accuracy", "macro_f1", "auc")
    )
    row = {
        "dataset": name,
        "split": "test",
        "n_test": n_test,
        "medlens": ml,
        "plain": plain,
        "medlens_better_on_all_three": better,
        "commands": {"medlens": medlens_cmd, "plain": plain_cmd},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"processor": platform.processor(), "cpu_count": os.cpu_count()},
    }
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


HEADER = (
    "| dataset | test n | medlens acc / macro-F1 / AUC | plain acc / macro-F1 / AUC | medlens train s "
    "| plain train s | medlens better on all three? |\n|---|---|---|---|---|---|---|"
)


def run(names: list[str], seconds: float | None) -> None:
    rows = []
    for name in names:
        r = run_one(name, seconds)
        rows.append(
            f"| {name} | {r['n_test']} | {_fmt(r['medlens'])} | {_fmt(r['plain'])} "
            f"| {r['medlens']['train_seconds']} | {r['plain']['train_seconds']} "
            f"| {'yes' if r['medlens_better_on_all_three'] else 'no'} |"
        )
        print(HEADER, *rows, sep="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="write the manifests and CSVs into bench/out/defaults/")
    r = sub.add_parser("run", help="medlens defaults, then the plain script, per dataset")
    r.add_argument("names", nargs="+", choices=DATASETS, metavar="NAME", help=" ".join(DATASETS))
    r.add_argument("--seconds", type=float, help="plain script budget (default: medlens's train_seconds)")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare()
    else:
        run(args.names, args.seconds)


if __name__ == "__main__":
    main()
