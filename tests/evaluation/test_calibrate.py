"""`medlens calibrate` refuses what would store a meaningless temperature: the train split, a degenerate fit;
it warns on few cases; and it replaces a damaged calibration.json (which every other command refuses)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from cli_helpers import run_cli

import medlens

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_folders):
    root = tmp_path_factory.mktemp("calibrate")
    data = make_folders(root / "data", n_per_class=6, size=16)
    return medlens.train(data, root / "run", model="logreg", epochs=1, image_size=16, progress=False)


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the trained run beside a copy of its data (the manifest's relative paths resolve)."""
    shutil.copytree(trained.parent / "data", tmp_path / "data")
    return shutil.copytree(trained, tmp_path / "run")


def test_calibrate_refuses_the_train_split(run, monkeypatch, capsys):
    code, _out, err = run_cli(monkeypatch, capsys, "calibrate", run, "--split", "train")
    assert code == 2 and "refusing to calibrate on the train split" in err
    assert len(err.strip().splitlines()) == 1 and not (run / "calibration.json").exists()


def test_degenerate_fit_is_refused_and_nothing_stored(run, monkeypatch, capsys):
    manifest = pd.read_csv(run / "manifest.csv")
    val = manifest["split"] == "val"
    manifest.loc[val, "label"] = manifest.loc[val, "label"].map({"cyst": "normal", "normal": "cyst"})
    manifest.to_csv(run / "manifest.csv", index=False)  # the model is now wrong on every val case: T -> inf
    code, _out, err = run_cli(monkeypatch, capsys, "calibrate", run, "--quiet")
    assert code == 2 and "temperature scaling degenerated on the 2 cases of the val split" in err, err
    assert "is outside the sane range [0.05, 20]" in err and len(err.strip().splitlines()) == 1
    assert not (run / "calibration.json").exists()


def test_few_cases_are_fitted_with_a_warning(run, monkeypatch, capsys):
    code, _out, err = run_cli(monkeypatch, capsys, "calibrate", run, "--quiet")
    assert code == 0, err
    assert "warning: fitted on only 2 cases (fewer than 20): T is poorly determined" in err
    assert "fewer than 20" in json.loads((run / "calibration.json").read_text())["warning"]


def test_calibrate_replaces_a_damaged_calibration_file(run, monkeypatch, capsys, tmp_path):
    (run / "calibration.json").write_text('{"method": "temperature", "T": -1, "fit_on": "val"}')
    image = next((tmp_path / "data" / "cyst").iterdir())
    code, _out, err = run_cli(monkeypatch, capsys, "predict", run, image, "--json")
    assert code == 2 and "calibration.json is damaged: T = -1" in err
    code, _out, err = run_cli(monkeypatch, capsys, "calibrate", run, "--quiet")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "predict", run, image, "--json")
    assert code == 0 and json.loads(out)[0]["calibrated"] is True


def test_evaluate_threshold_replaces_a_damaged_operating_point(run, monkeypatch, capsys, tmp_path):
    (run / "operating_point.json").write_text('{"class": "nosuch", "threshold": 7}')
    ev = ["-o", tmp_path / "ev", "--bootstrap", "10", "--quiet"]
    code, _out, err = run_cli(monkeypatch, capsys, "evaluate", run, *ev)
    assert code == 2 and "operating_point.json is damaged: class 'nosuch'" in err
    code, _out, err = run_cli(monkeypatch, capsys, "evaluate", run, *ev, "--threshold", "0.4")
    assert code == 0, err
    assert json.loads((run / "operating_point.json").read_text())["threshold"] == 0.4
