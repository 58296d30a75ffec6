"""`--budget`: the number of epochs is fitted to a wall-clock budget by a throughput probe, the plan is in
train.json, and a bad duration is one line."""

from __future__ import annotations

import json

import pytest

import medlens
from medlens.errors import MedlensError
from medlens.training.config import TrainConfig, parse_duration


def test_durations_parse_and_bad_ones_say_how():
    assert [parse_duration(t) for t in ("90s", "5m", "1.5h", "2")] == [90.0, 300.0, 5400.0, 120.0]
    for bad in ("five minutes", "-3m", "0s", "", "inf"):
        with pytest.raises(MedlensError, match="--budget must be a duration like 90s, 5m or 1.5h"):
            TrainConfig(budget=bad)


def test_a_budget_plans_the_epochs_and_is_reported(tmp_path, make_folders, one_thread):
    data = make_folders(tmp_path / "data", n_per_class=16, size=32)
    run = medlens.train(
        data, tmp_path / "run", model="cnn-small", image_size=32, budget="6s", patience=100, progress=False
    )
    facts = json.loads((run / "train.json").read_text())
    plan = facts["budget"]
    assert plan["budget_s"] == 6.0 and plan["epochs_planned"] >= 1 and plan["probe_epoch_s"] > 0
    assert facts["epochs_run"] == plan["epochs_run"] <= plan["epochs_planned"]
    assert (run / "budget.json").is_file()
