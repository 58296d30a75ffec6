"""Speed and accuracy levers of issue 13, each measured on and off side by side in one process.

    .venv/bin/python bench/bench_levers.py train [--budget 100s] [--size 96]
    .venv/bin/python bench/bench_levers.py infer RUN [--onnx-path DIR]

``train``: the brain-MRI manifest with a held-out test split (``bench/out/cal-brain.csv``, made by
``bench/bench_calibration.py prepare``) is trained once per lever under the same wall-clock budget, with the
lever on, against the same command without it (the baseline, run first and last so that drift of the shared
machine shows). Reported: epochs that fit, training images/s, best validation accuracy (selected on val, so
optimistic) and test accuracy (never trained or selected on).

``infer``: on RUN's test split, horizontal-flip test-time averaging (accuracy and time against one pass),
and ONNX Runtime against PyTorch (with BatchNorm folded, medlens's default) for the same weights. ONNX
needs ``onnx``, ``onnxscript`` and ``onnxruntime``, which medlens does not depend on: install them into a
separate folder and pass it with ``--onnx-path`` (``pip install --target DIR onnx onnxscript onnxruntime``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "levers"
MEDLENS = [str(ROOT / ".venv" / "bin" / "medlens")]
LEVERS = {
    "baseline": [],
    "ema": ["--ema"],
    "mixup": ["--mixup", "0.2"],
    "progressive": ["--progressive"],
    "compile": ["--compile"],
    "baseline-again": [],
}


def train(args) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = ROOT / "bench" / "out" / "cal-brain.csv"
    if not manifest.is_file():
        sys.exit(f"{manifest} is missing: run `.venv/bin/python bench/bench_calibration.py prepare` first")
    common = ["--image-size", str(args.size), "--budget", args.budget, "--no-final", "--quiet", "--overwrite"]
    rows = []
    for name in args.levers or LEVERS:
        run = OUT / f"train-{name}"
        cmd = [*MEDLENS, "train", str(manifest), "-o", str(run), *common, *LEVERS[name]]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            print(f"{name}: failed ({done.stderr.strip().splitlines()[-1:]})", flush=True)
            rows.append({"lever": name, "error": done.stderr.strip()[-400:], "command": " ".join(cmd)})
            continue
        facts = json.loads((run / "train.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        row = {
            "lever": name,
            "flags": " ".join(LEVERS[name]) or "(none)",
            "epochs": facts["epochs_run"],
            "train_s": facts["train_seconds"],
            "images_per_s": facts["images_per_second"],
            "val_accuracy_best": facts["best_score"],
            "test_split": summary["split"],
            "test_n": summary["n_cases"],
            "test_accuracy": summary["metrics"]["accuracy"]["value"],
            "test_accuracy_ci": summary["metrics"]["accuracy"].get("ci95"),
            "wall_s": round(wall, 1),
            "command": " ".join(cmd),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    record = {"bench": "levers-train", "date": _now(), "budget": args.budget, "size": args.size, "rows": rows}
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    print("| lever | epochs in budget | train img/s | best val acc (selected on val) | test acc [95 % CI] |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['lever']} | failed | | | |")
            continue
        ci = r["test_accuracy_ci"] or [float("nan")] * 2
        print(
            f"| {r['lever']} (`{r['flags']}`) | {r['epochs']} | {r['images_per_s']} | "
            f"{r['val_accuracy_best']:.3f} | {r['test_accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] |"
        )


def infer(args) -> None:
    import numpy as np
    import torch

    from medlens.data.cache import load_image
    from medlens.data.manifest import Manifest
    from medlens.models.checkpoint import load_model
    from medlens.tasks.base import channels_last, normalize

    torch.set_num_threads(2)
    run = Path(args.run)
    loaded = load_model(run)
    spec = loaded.spec
    manifest = Manifest.load(run / "manifest.csv").subset("test")
    classes = list(spec.class_names)
    images = np.stack(
        [load_image(manifest.resolve(p), spec.image_size, spec.channels) for p in manifest.df["image"]]
    )
    truth = np.array([classes.index(str(v)) for v in manifest.df["label"]])
    x_all = channels_last(normalize(torch.from_numpy(images), spec))

    def logits(model, x, flip: bool) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(x), 64):
                b = x[i : i + 64]
                y = model(b).float()
                if flip:
                    y = (y.softmax(1) + model(torch.flip(b, dims=[-1])).float().softmax(1)) / 2
                out.append(y.numpy())
        return np.concatenate(out)

    model = loaded.model.eval()
    rows = {}
    for name, flip in (("one pass", False), ("flip TTA", True)):
        logits(model, x_all[:64], flip)  # warm-up
        t0 = time.perf_counter()
        pred = logits(model, x_all, flip).argmax(1)
        seconds = time.perf_counter() - t0
        rows[name] = {"accuracy": float((pred == truth).mean()), "ms_per_image": 1000 * seconds / len(truth)}
    result = {
        "bench": "levers-infer",
        "date": _now(),
        "run": str(run),
        "split": "test",
        "n": len(truth),
        **rows,
    }
    if args.onnx_path:
        sys.path.append(args.onnx_path)  # after the venv: its numpy, sympy and torch stay in use
        result["onnx"] = _onnx(model, x_all, truth, OUT / "model.onnx")
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=1))


def _onnx(model, x_all, truth, path: Path) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    x = x_all.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (x[:1],), str(path), input_names=["x"], output_names=["y"], dynamic_shapes={"x": {0: "batch"}}
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = {}
    for batch in (1, 32):
        xb = x[:batch]
        with torch.no_grad():
            model(xb)
            t0 = time.perf_counter()
            for _ in range(20):
                ref = model(xb).float().numpy()
            torch_s = (time.perf_counter() - t0) / 20
        session.run(None, {"x": xb.numpy()})
        t0 = time.perf_counter()
        for _ in range(20):
            got = session.run(None, {"x": xb.numpy()})[0]
        ort_s = (time.perf_counter() - t0) / 20
        out[f"batch_{batch}"] = {
            "torch_ms": 1000 * torch_s,
            "onnxruntime_ms": 1000 * ort_s,
            "ratio_ort_over_torch": ort_s / torch_s,
            "max_abs_diff": float(np.abs(ref - got).max()),
        }
    preds = np.concatenate(
        [session.run(None, {"x": x[i : i + 64].numpy()})[0] for i in range(0, len(x), 64)]
    ).argmax(1)
    out["accuracy"] = float((preds == truth).mean())
    return out


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--budget", default="100s")
    t.add_argument("--size", type=int, default=96)
    t.add_argument("levers", nargs="*", help=f"some of {', '.join(LEVERS)} (default: all)")
    i = sub.add_parser("infer")
    i.add_argument("run")
    i.add_argument("--onnx-path")
    args = parser.parse_args()
    unknown = [n for n in getattr(args, "levers", []) if n not in LEVERS]
    if unknown:
        parser.error(f"unknown lever {unknown[0]!r}; choose from {', '.join(LEVERS)}")
    train(args) if args.cmd == "train" else infer(args)


if __name__ == "__main__":
    main()
