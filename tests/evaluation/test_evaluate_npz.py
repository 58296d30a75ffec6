"""`medlens evaluate RUN --data X.npz` where the npz holds only a test split: the CLI reads the summary from
the folder evaluate wrote (it once rebuilt the name itself and looked in the wrong one)."""

from __future__ import annotations

import json

import numpy as np
from cli_helpers import run_cli

import medlens


def _arrays(rng, n: int, size: int = 16):
    y = rng.integers(0, 2, n)
    x = rng.normal(60, 10, (n, size, size))
    x[y == 1, 4:12, 4:12] += 120
    return np.clip(x, 0, 255).astype(np.uint8), y[:, None]


def test_a_test_only_npz_evaluates(tmp_path, monkeypatch, capsys, one_thread):
    rng = np.random.default_rng(0)
    tr, ytr = _arrays(rng, 48)
    va, yva = _arrays(rng, 16)
    te, yte = _arrays(rng, 20)
    np.savez(tmp_path / "toymnist.npz", train_images=tr, train_labels=ytr, val_images=va, val_labels=yva)
    np.savez(tmp_path / "toymnist_test.npz", test_images=te, test_labels=yte)
    npz = tmp_path / "toymnist.npz"
    run = medlens.train(npz, tmp_path / "run", model="cnn-small", epochs=1, image_size=16, progress=False)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", run, "--data", tmp_path / "toymnist_test.npz")
    assert code == 0, err
    [folder] = [p for p in run.iterdir() if p.name.startswith("eval-")]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_cases"] == 20 and summary["split"] == "test"
    assert "accuracy" in out
