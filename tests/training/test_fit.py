"""The shared training loop: determinism, resume after an interruption, augmentation replay, fractions."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from medlens.data.augment import AugmentSpec, augment_batch
from medlens.pipeline.steps import train

FAST = dict(epochs=2, image_size=32, batch_size=8, progress=False)


def test_same_seed_same_run(tmp_path, make_folders):
    data = make_folders(tmp_path / "d", n_per_class=10)
    a = train(data, tmp_path / "a", seed=3, **FAST)
    b = train(data, tmp_path / "b", seed=3, **FAST)
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"))
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert [c["probabilities"] for c in sa["cases"]] == [c["probabilities"] for c in sb["cases"]]
    assert (
        pd.read_csv(a / "manifest.csv")["split"].tolist() == pd.read_csv(b / "manifest.csv")["split"].tolist()
    )


def test_interrupted_run_is_not_complete_and_resumes(tmp_path, make_folders, monkeypatch):
    data = make_folders(tmp_path / "d", n_per_class=8)
    import medlens.pipeline.steps as steps

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(steps, "evaluate", boom)
        with pytest.raises(KeyboardInterrupt):
            train(data, tmp_path / "run", **FAST)
    assert not (tmp_path / "run").exists()  # never looks finished
    assert (tmp_path / "run.partial" / "checkpoints" / "last.ckpt").is_file()
    run = train(data, tmp_path / "run", resume=True, **{**FAST, "epochs": 3})
    assert (run / "summary.json").is_file() and not (tmp_path / "run.partial").exists()
    assert pd.read_csv(run / "history.csv")["epoch"].max() == 3


def test_fraction_trains_on_a_stratified_subset(tmp_path, make_folders):
    data = make_folders(tmp_path / "d", n_per_class=20)
    run = train(data, tmp_path / "r", fraction=0.5, **{**FAST, "epochs": 1})
    info = json.loads((run / "train.json").read_text())
    assert info["n_images"]["val"] == 8  # the validation split is carved before subsetting
    assert info["class_counts"]["train"] == {"cyst": 8, "normal": 8}


def test_augmentation_replays_with_the_same_seed():
    x = torch.randn(4, 1, 16, 16)
    spec = AugmentSpec()
    a = augment_batch(x, spec, torch.Generator().manual_seed(1))
    b = augment_batch(x, spec, torch.Generator().manual_seed(1))
    c = augment_batch(x, spec, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


def test_identity_augmentation_keeps_the_image():
    x = torch.randn(2, 1, 16, 16)
    spec = AugmentSpec(rotate_deg=0, scale=0, translate=0, hflip=0, brightness=0, contrast=0)
    assert torch.allclose(augment_batch(x, spec, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_audit_fix_moves_a_leaked_duplicate_out_of_test(tmp_path, make_folders):
    import shutil

    data = make_folders(tmp_path / "d", n_per_class=12, split_level=True)
    leaked = data / "test" / "cyst" / "cyst_000.png"
    shutil.copy(leaked, data / "train" / "cyst" / "copy_of_test.png")
    run = train(data, tmp_path / "r", audit_fix=True, **{**FAST, "epochs": 1})
    changes = json.loads((run / "train.json").read_text())["audit_fix"]
    assert any("cyst_000" in c["path"] for c in changes)
    manifest = pd.read_csv(run / "manifest.csv")
    leaked_rows = manifest[manifest["image"].str.endswith("test/cyst/cyst_000.png")]
    assert not (leaked_rows["split"] == "test").any()  # moved to train, or dropped as an exact copy
    summary = json.loads((run / "summary.json").read_text())
    assert summary["audit_fix"]["applied"] and summary["audit_fix"]["changes"] >= 1
    assert "Leakage-checked" in (run / "report.html").read_text()
