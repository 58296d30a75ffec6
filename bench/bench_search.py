"""Grid search (brief 2's 54 points) against TPE with the same wall-clock budget, on brain-tumor MRI.

    .venv/bin/python bench/bench_search.py [--budget 20m] [--jobs 2] [--out /tmp/bench-search]

Both searches train cnn-small (SGD, so that the grid's momentum counts) at 64 px for 2 epochs on a quarter
of the training images, score every trial on the same validation split, and print their best validation
accuracy.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import medlens

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-tumor-mri" / "Training"
GRID = "dropout=0,0.1,0.2 weight_decay=0,0.001,0.01 momentum=0.9,0.95 lr=1e-4,1e-3,1e-2"
SETS = {
    "image_size": 64,
    "epochs": 2,
    "fraction": 0.25,
    "model": "cnn-small",
    "optimizer": "sgd",
}  # momentum counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--budget", default="20m", help="wall-clock budget of each search")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-search"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    found, spent = {}, None
    for name, how in (("grid", {"grid": GRID}), ("tpe", {"trials": 1000})):
        t0 = time.perf_counter()
        result = medlens.search(
            args.data,
            args.out / name,
            jobs=args.jobs,
            # equal total budget: TPE gets the wall time the grid actually used (pruning ends it early)
            budget=args.budget if spent is None else spent,
            overrides=SETS,
            progress=True,
            **how,
        )
        found[name] = result
        spent = spent or time.perf_counter() - t0
        print(
            f"{name}: {result['n_trials']} trials {result['states']} in {time.perf_counter() - t0:.0f} s; "
            f"best val_accuracy {result['best']['value']:.4f} {result['best']['params']}",
            flush=True,
        )
    print()
    for name, result in found.items():
        print(f"{name:5s} best val_accuracy {result['best']['value']:.4f} ({result['n_trials']} trials)")


if __name__ == "__main__":
    main()
