"""`medlens curve`: validation score against training-set fraction (e.g. trained on 10, 20 and 30 %)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from medlens.data.prepared import resolve_source
from medlens.errors import MedlensError
from medlens.evaluation.plots import plot_learning_curve
from medlens.pipeline.steps import train
from medlens.utils.files import atomic_write_text, check_output_path, read_marker, write_marker


def learning_curve(
    source,
    out_dir: str | Path,
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.3),
    model: str = "cnn-small",
    metric: str = "accuracy",
    overwrite: bool = False,
    progress: bool = True,
    **train_options,
) -> pd.DataFrame:
    """Train one run per fraction (same seed, same validation split) and plot ``metric`` on val.

    Every run evaluates on the same carved validation split, so the points differ only in training data.
    Writes ``curve.csv`` and ``curve.png`` into ``out_dir`` and returns the table.
    """
    if not fractions:
        raise MedlensError("--fractions needs at least one value in (0, 1]")
    for f in fractions:
        if not 0 < f <= 1:
            raise MedlensError(f"--fractions values must be in (0, 1], got {f}")
    out_dir = Path(out_dir)
    # the folder may exist (runs are replaced one by one); --overwrite only touches a folder medlens wrote
    check_output_path(
        out_dir, sources=[source], overwrite=True if overwrite else None, what="curve folder", marker="curve"
    )
    fresh = not out_dir.exists() or not any(out_dir.iterdir())  # never mark a folder someone else filled
    manifest = resolve_source(source)  # ingest once, reuse for every fraction
    out_dir.mkdir(parents=True, exist_ok=True)
    if fresh and read_marker(out_dir) is None:
        write_marker(out_dir, "curve")
    rows = []
    for f in sorted(fractions):
        run = train(
            manifest,
            out_dir / f"fraction-{f:.2f}",
            model=model,
            fraction=f,
            overwrite=overwrite,
            progress=progress,
            **train_options,
        )
        summary = json.loads((run / "summary.json").read_text())
        train_info = json.loads((run / "train.json").read_text())
        m = summary["metrics"][metric]
        rows.append(
            {
                "fraction": f,
                "n_train": train_info["n_images"]["train"],
                "split": summary["split"],
                "n_eval": summary["n_cases"],
                metric: m["value"],
                "ci_low": m["ci95"][0],
                "ci_high": m["ci95"][1],
                "train_seconds": train_info["train_seconds"],
                "run": str(run),
            }
        )
    table = pd.DataFrame(rows)
    atomic_write_text(out_dir / "curve.csv", table.to_csv(index=False))
    plot_learning_curve(table.rename(columns={metric: "value"}), out_dir / "curve.png")
    return table
