"""Lightning DDP on CPU: `medlens train --devices 2 --strategy ddp` trains with two gloo processes, gives the
metrics of a single-process run within noise, and only rank 0 writes (one run folder, no .partial left, the
summary printed once)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_and_only_rank_0_writes(tmp_path, make_folders):
    data = make_folders(tmp_path / "data", n_per_class=60, size=32)
    common = ["--model", "cnn-small", "--epochs", "4", "--image-size", "32", "--batch-size", "16", "--quiet"]
    runs = {}
    for name, extra in (
        ("one", []),
        ("ddp", ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"]),
    ):
        out = tmp_path / name
        proc = subprocess.run(
            [sys.executable, "-m", "medlens", "train", str(data), "-o", str(out), *common, *extra],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("report:") == 1, proc.stdout  # one process reports
        runs[name] = json.loads((out / "summary.json").read_text())
        history = pd.read_csv(out / "history.csv")
        assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ddp", "one"]  # no .partial, no strays
    one, ddp = (runs[k]["metrics"]["accuracy"]["value"] for k in ("one", "ddp"))
    assert one > 0.8 and ddp > 0.8 and abs(one - ddp) <= 0.15
    assert runs["ddp"]["n_cases"] == runs["one"]["n_cases"]  # the same validation split, scored once
