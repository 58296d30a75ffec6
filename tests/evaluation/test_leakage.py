"""`evaluate RUN --data SRC` scores the other data twice: on all cases and without the cases that copy (or
nearly copy) an image the run trained or was selected on (`metrics_deduplicated`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

import medlens
from medlens.data.hashing import nearest_distance


def test_nearest_distance_is_the_smallest_hamming_distance():
    ref = np.array([0b0000, 0b1111, 2**63], dtype=np.uint64)
    q = np.array([0b0001, 0b0111, 2**63 + 3], dtype=np.uint64)
    assert nearest_distance(q, ref).tolist() == [1, 1, 2]
    assert nearest_distance(q, np.zeros(0, dtype=np.uint64)).tolist() == [65, 65, 65]


def test_copies_of_training_images_are_scored_apart(tmp_path, make_folders, one_thread):
    data = make_folders(tmp_path / "data", n_per_class=20, size=32)
    run = medlens.train(data, tmp_path / "run", model="cnn-small", epochs=2, image_size=32, progress=False)
    manifest = (run / "manifest.csv").read_text().splitlines()
    trained = [line.split(",")[3] for line in manifest[1:] if ",train," in line][:6]
    other = tmp_path / "other"
    for i, rel in enumerate(trained):  # 3 exact copies and 3 re-encoded near copies of training images
        src = (run / rel).resolve()
        dest = other / src.parent.name / f"copy{i}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if i < 3:
            shutil.copy(src, dest)
        else:
            arr = np.asarray(Image.open(src)).astype(np.int16) + 1  # brightness +1: same pHash, new pixels
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(dest)
    fresh = make_folders(tmp_path / "fresh", n_per_class=5, size=32, seed=7)
    for f in fresh.rglob("*.png"):
        (other / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, other / f.parent.name / f"new-{f.name}")
    summary = medlens.evaluate(run, other, out=tmp_path / "eval", n_bootstrap=100, progress=False)
    dd = summary["metrics_deduplicated"]
    assert summary["n_cases"] == 16 and dd["n_cases"] == 10 and dd["n_removed"] == 6
    assert dd["n_exact"] == 3 and dd["n_near"] == 3 and "pHash within 4 bits" in dd["rule"]
    assert set(dd["metrics"]) == set(summary["metrics"])
    written = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert written["metrics_deduplicated"]["n_cases"] == 10
    assert "Without copies of the training data" in (tmp_path / "eval" / "report.html").read_text()
    own = medlens.evaluate(run, out=tmp_path / "own", progress=False)
    assert "metrics_deduplicated" not in own  # its own split: already disjoint by construction
