"""`medlens search`: grid parsing, a 2x2 grid through the CLI (with --test), and TPE on two workers."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
from cli_helpers import run_cli

import medlens
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.searching.space import grid_size, parse_budget, parse_grid, parse_sets

SETS = ("--set", "epochs=2", "--set", "image_size=16", "--set", "model=cnn-small", "--set", "batch_size=8")


def test_parse_grid_types_and_product():
    grid = parse_grid("dropout=0,0.1,0.2 weight_decay=0,0.001,0.01 momentum=0.9,0.95 lr=1e-4,1e-3,1e-2")
    assert grid["dropout"] == [0.0, 0.1, 0.2] and grid["lr"] == [1e-4, 1e-3, 1e-2]
    assert grid_size(grid) == 54
    assert parse_grid("epochs=1,2 optimizer=adamw,sgd augment=true,false") == {
        "epochs": [1, 2],
        "optimizer": ["adamw", "sgd"],
        "augment": [True, False],
    }
    assert parse_sets(["epochs=2", "model=cnn-small"]) == {"epochs": 2, "model": "cnn-small"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dropuot=0,0.1", "Did you mean 'dropout'"),
        ("lr=fast", "lr='fast': not a number"),
        ("epochs=1.5", "not a number"),
        ("dropout=2", "--dropout must be in"),
        ("optimizer=adam", "optimizer"),
        ("dropout", "name=v1,v2"),
        ("", "--grid is empty"),
        ("patch_size=8", "cannot be searched"),
    ],
)
def test_parse_grid_refuses(text, message):
    with pytest.raises(MedlensError, match=message):
        parse_grid(text)


def test_parse_budget():
    assert parse_budget("90s") == 90 and parse_budget("30m") == 1800 and parse_budget("1.5h") == 5400
    assert parse_budget(None) is None
    for bad in ("soon", "-3m", "0s", "10d"):
        with pytest.raises(MedlensError, match="--budget"):
            parse_budget(bad)


def test_cli_grid_search_with_test(make_folders, tmp_path, monkeypatch, capsys, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=12, size=16)
    held_out = make_folders(tmp_path / "t", n_per_class=4, size=16)
    out = tmp_path / "search"
    grid = "dropout=0,0.2 lr=1e-3,1e-2"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "search", data, "-o", out, "--grid", grid, "--test", held_out, *SETS
    )
    assert code == 0, err
    assert f"--config {out / 'best.yaml'} -o RUN" in stdout
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and set(results["state"]) == {"complete"}
    assert set(zip(results["dropout"], results["lr"])) == {(0, 1e-3), (0, 1e-2), (0.2, 1e-3), (0.2, 1e-2)}
    for name in ("best.yaml", "parallel_coordinates.png", "importance.png", "manifest.csv", "study.db"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "search.json").read_text())
    assert summary["sampler"] == "grid" and summary["n_trials"] == 4
    assert summary["best"]["value"] == results["value"].max()
    assert summary["test"]["n_cases"] == 8 and 0 <= summary["test"]["metrics"]["accuracy"] <= 1
    # every trial was scored on the same validation cases, the ones of OUT/manifest.csv
    val = [
        set(Manifest.load(out / "trials" / f"trial-{n}" / "manifest.csv").subset("val").df["case_id"])
        for n in range(4)
    ]
    assert val[0] and all(v == val[0] for v in val)
    assert val[0] == set(Manifest.load(out / "manifest.csv").subset("val").df["case_id"])
    # best.yaml retrains as it is
    cfg = medlens.TrainConfig.load(out / "best.yaml")
    assert cfg.epochs == 2 and cfg.dropout == summary["best"]["params"]["dropout"] and cfg.max_minutes is None
    assert not list((out / "trials").glob("*.partial"))


def test_tpe_on_two_workers_shares_the_database(make_folders, tmp_path):
    data = make_folders(tmp_path / "d", n_per_class=12, size=16)
    out = tmp_path / "tpe"
    result = medlens.search(
        data,
        out,
        trials=3,
        jobs=2,
        budget="10m",
        overrides={"epochs": 2, "image_size": 16, "model": "cnn-small", "batch_size": 8},
        progress=False,
    )
    assert result["sampler"] == "tpe" and result["jobs"] == 2 and result["n_trials"] == 3
    study = optuna.load_study(study_name=result["study_name"], storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 3
    assert set(result["best"]["params"]) == {"lr", "weight_decay", "dropout"}  # momentum: with sgd only
    assert not list((out / "trials").glob("*.partial"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "exactly one of --grid"),
        (("--grid", "lr=1e-3", "--trials", "2"), "exactly one of --grid"),
        (("--grid", "weight_decy=0,1e-3"), "Did you mean"),
        (("--trials", "2", "--budget", "soon"), "--budget"),
        (("--trials", "0"), "--trials"),
        (("--trials", "2", "--set", "epochs"), "--set needs KEY=VALUE"),
        (("--grid", "lr=1e-3", "--set", "lr=1e-2"), "both searched"),
        (("--trials", "2", "--storage", "not a url"), "--storage"),
        (("--trials", "2", "--storage", "postgresql://nobody@127.0.0.1:1/none"), "cannot open --storage"),
    ],
)
def test_cli_refuses_bad_input(make_folders, tmp_path, monkeypatch, capsys, args, message):
    data = make_folders(tmp_path / "d", n_per_class=3, size=16)
    code, out, err = run_cli(monkeypatch, capsys, "search", data, "-o", tmp_path / "s", *args)
    assert code == 2
    assert message in out + err
    assert not (tmp_path / "s").exists()


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_pruned_trial_leaves_no_partial_run(make_folders, tmp_path, monkeypatch):
    from medlens.searching import run

    monkeypatch.setattr(run, "_pruner", lambda plan: _AlwaysPrune())
    data = make_folders(tmp_path / "d", n_per_class=6, size=16)
    out = tmp_path / "s"
    with pytest.raises(MedlensError, match="no trial of the search completed: the pruner stopped all 1"):
        medlens.search(data, out, grid="dropout=0", overrides={"epochs": 2, "image_size": 16}, progress=False)
    results = pd.read_csv(out / "results.csv")
    assert list(results["state"]) == ["pruned"] and results["epochs"].tolist() == [1]
    assert not list((out / "trials").glob("*"))


def _no_training(*args, **kwargs):
    raise AssertionError("a trial ran")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--grid", "model=nosuchnet"), "error: --grid model=nosuchnet: unknown model 'nosuchnet'."),
        (
            ("--grid", "model=logreg,cnn-smal"),
            "--grid model=cnn-smal: unknown model 'cnn-smal'. Did you mean",
        ),
        (("--grid", "model=unet"), "--grid model=unet: model 'unet' is a segmentation model and cannot be"),
        (("--grid", "lr=1e-3", "--set", "model=nosuchnet"), "--set model=nosuchnet: unknown model"),
        (("--grid", "optimizer=adamw,sgd,adam"), "optimizer=adam: --optimizer must be one of adamw, sgd"),
        (("--grid", "ema=true,false", "--set", "epochs=1"), None),  # valid: reaches the (blocked) trials
    ],
)
def test_every_grid_value_is_checked_before_any_trial(
    make_folders, tmp_path, monkeypatch, capsys, args, message
):
    monkeypatch.setattr(medlens, "train", _no_training)
    data = make_folders(tmp_path / "d", n_per_class=3, size=16)
    code, out, err = run_cli(monkeypatch, capsys, "search", data, "-o", tmp_path / "s", *args, "--quiet")
    assert code == 2, out + err
    if message is None:  # the check let it through: every trial "ran" into _no_training
        assert "no trial of the search completed: 2 of 2 trial(s) failed" in err
        return
    assert err.startswith(f"error: {message}".replace("error: error: ", "error: ")), err
    assert len(err.strip().splitlines()) == 1 and not out, out + err
    assert not (tmp_path / "s").exists()


def test_a_search_whose_every_trial_failed_exits_2_in_one_line(make_folders, tmp_path, monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(medlens, "train", boom)
    data = make_folders(tmp_path / "d", n_per_class=3, size=16)
    code, out, err = run_cli(
        monkeypatch, capsys, "search", data, "-o", tmp_path / "s", "--grid", "dropout=0,0.1", "--quiet"
    )
    assert code == 2 and not out, out + err
    assert err.strip().splitlines() == [
        "error: no trial of the search completed: 2 of 2 trial(s) failed, the first with: out of memory; "
        f"see {tmp_path / 's' / 'results.csv'}"
    ]


def test_failed_trials_are_reported_beside_the_best(make_folders, tmp_path, monkeypatch, capsys, one_thread):
    train = medlens.train

    def fails_with_dropout(source, run, config, **kwargs):
        if config.dropout:
            raise RuntimeError("diverged")
        return train(source, run, config=config, **kwargs)

    monkeypatch.setattr(medlens, "train", fails_with_dropout)
    data = make_folders(tmp_path / "d", n_per_class=6, size=16)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "search",
        data,
        "-o",
        tmp_path / "s",
        "--grid",
        "dropout=0,0.2",
        "--set",
        "epochs=1",
        "--set",
        "image_size=16",
        "--set",
        "model=logreg",
        "--quiet",
    )
    assert code == 0, out + err
    assert "1 of 2 trials failed, the first with: diverged" in out
    assert json.loads((tmp_path / "s" / "search.json").read_text())["failed"] == {
        "n": 1,
        "first_error": "diverged",
    }
    assert "Trial 1 failed" not in out + err  # Optuna's own warning and traceback stay out
