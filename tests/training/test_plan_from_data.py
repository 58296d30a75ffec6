"""A plan from the data alone: no clock decides any planned value, the same data and options give a
byte-identical plans.json and identical weights, 3D volumes are planned from their fingerprint, and only an
explicit --budget lets wall-clock time decide (and says so)."""

from __future__ import annotations

import json
import time

import torch
from seg_phantoms import make_spheres
from typer.testing import CliRunner

from medlens.cli import app
from medlens.evaluation.model_card import _budget
from medlens.models.registry import get_model_info
from medlens.pipeline.steps import train
from medlens.training import estimate as estimate_module
from medlens.training import plan_rules
from medlens.training.config import TrainConfig
from medlens.training.plans import estimate, make_plan

TINY_UNET = {"channels": [8, 16, 32], "num_res_units": 1}


def _slow_clock(monkeypatch, factor: float = 100.0) -> None:
    """Make every timing of the estimate read ``factor`` times longer: a machine 100x slower."""
    real = time.perf_counter
    monkeypatch.setattr(estimate_module, "clock", lambda: real() * factor)


def _choose(name, value, reason, source="plan"):
    return value


def test_the_plan_is_the_same_on_a_100x_slower_machine(tmp_path, make_folders, monkeypatch, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=10, size=24)
    runner = CliRunner()
    fast = runner.invoke(app, ["plan", str(data), "-o", str(tmp_path / "fast.json")])
    assert fast.exit_code == 0, fast.output
    cfg, info = TrainConfig(), get_model_info("cnn-small")
    plan = json.loads((tmp_path / "fast.json").read_text())
    quick = estimate(cfg, info, plan)
    _slow_clock(monkeypatch)
    slow = runner.invoke(app, ["plan", str(data), "-o", str(tmp_path / "slow.json")])
    assert slow.exit_code == 0, slow.output
    assert (tmp_path / "fast.json").read_bytes() == (tmp_path / "slow.json").read_bytes()
    assert "training: about" in slow.output and "not part of the plan" in slow.output
    sluggish = estimate(cfg, info, plan)
    assert sluggish["seconds_per_image"] > 10 * quick["seconds_per_image"]  # the probe did see it
    text = (tmp_path / "slow.json").read_text()
    assert "images_per_s" not in text and "seconds_per_image" not in text and "budget_s" not in text


def test_plan_command_writes_byte_identical_plans(tmp_path, make_folders, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=10, size=24)
    for name in ("a.json", "b.json"):
        result = CliRunner().invoke(app, ["plan", str(data), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_two_trainings_give_identical_weights_and_plans(tmp_path, make_folders, monkeypatch, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=8, size=24)
    runs = []
    for name in ("a", "b"):
        if name == "b":
            _slow_clock(monkeypatch)  # the second run's machine looks 100x slower
        args = ["train", str(data), "-o", str(tmp_path / name), "--model", "cnn-small", "--epochs", "2"]
        result = CliRunner().invoke(app, [*args, "--image-size", "24", "--quiet"])  # see docs/plans.md
        assert result.exit_code == 0, result.output
        runs.append(tmp_path / name)
    a, b = (torch.load(r / "model.pt", weights_only=True)["state_dict"] for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (runs[0] / "plans.json").read_bytes() == (runs[1] / "plans.json").read_bytes()
    facts = [json.loads((r / "train.json").read_text()) for r in runs]
    assert facts[1]["estimate"]["seconds_per_image"] > facts[0]["estimate"]["seconds_per_image"]
    assert "on this machine" in facts[0]["estimate"]["text"] and "budget" not in facts[0]


def test_epochs_come_from_the_dataset_size_and_image_size():
    assert plan_rules.plan_epochs(_choose, 5109, 128, False) == 44  # brain MRI folder: ~12 min here
    assert plan_rules.plan_epochs(_choose, 4708, 28, False) == 46  # PneumoniaMNIST: ~3 min here
    assert plan_rules.plan_epochs(_choose, 16, 24, False) == 150  # tiny: at most 150
    assert plan_rules.plan_epochs(_choose, 50_000, 128, False) == 6  # the work cap, not a smaller input
    assert plan_rules.plan_epochs(_choose, 200_000, 256, False) == 3  # never below 3


def test_volumes_are_planned_from_their_fingerprint(tmp_path, one_thread):
    data = make_spheres(tmp_path / "v", n_cases=8, shape=(24, 24, 16))
    cfg = TrainConfig(task="segmentation", model="unet", model_args=TINY_UNET)
    plan = make_plan(data, cfg, get_model_info("unet"))
    c = plan["choices"]
    assert c["patch_size"]["value"] == [24, 24, 16] and "90th-percentile" in c["patch_size"]["reason"]
    assert c["batch_size"]["value"] == 8 and "voxels per batch" in c["batch_size"]["reason"]
    assert c["epochs"]["value"] == 200 and "optimiser steps" in c["epochs"]["reason"]  # 3 steps per epoch
    assert c["image_size"]["value"] is None and c["budget"]["value"] is None
    assert make_plan(data, cfg, get_model_info("unet")) == plan
    # the planned patch trains (it fits the volumes and the network)
    run = train(data, tmp_path / "run", config=cfg, epochs=1, progress=False)
    assert json.loads((run / "train.json").read_text())["spec"]["patch_size"] == [24, 24, 16]
    # LGG-sized: 72 volumes x 4 patches of 96 x 96 x 32 at batch 4 are 72 steps per epoch
    assert plan_rules.plan_batch_3d(_choose, [96, 96, 32], 72, 4) == 4
    assert plan_rules.plan_epochs_3d(_choose, 72, 4, 4, False) == 21


def test_only_a_given_budget_lets_the_clock_decide_and_says_so(tmp_path, make_folders):
    data = make_folders(tmp_path / "d", n_per_class=10, size=24)
    plan = make_plan(data, TrainConfig(budget="30s"), get_model_info("cnn-small"))
    assert plan["budget"]["source"] == "option" and "depends on the machine" in plan["budget"]["note"]
    assert plan["choices"]["budget"]["source"] == "option" and plan["budget_s"] == 30.0
    assert "--budget decides how many" in plan["choices"]["epochs"]["reason"]
    free = make_plan(data, TrainConfig(), get_model_info("cnn-small"))
    assert "budget" not in free and "budget_s" not in free
    card = _budget({"budget": "30s", "epochs": 150}, {"epochs_run": 12, "train_seconds": 29.0})
    assert "Wall-clock budget 30s given" in card and "different number of epochs" in card
    assert "came from the data" in _budget({"epochs": 150}, {"epochs_run": 150, "train_seconds": 9.0})
