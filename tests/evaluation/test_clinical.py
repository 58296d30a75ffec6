"""End to end: calibrate a tiny run, then evaluate it with operating points, cohorts, readers, patient-level
metrics and the model card, through the CLI (the Python API is the same functions)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli

import medlens
from medlens.evaluation.readers import simulate_readers


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_folders):
    """A 2-class run on a manifest with patients (3 images each), sex, age and a held-out test split."""
    root = tmp_path_factory.mktemp("clinical")
    data = make_folders(root / "data", n_per_class=30, size=32)
    images = sorted(data.rglob("*.png"))
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"image": [str(p) for p in images], "label": [p.parent.name for p in images]})
    df["patient_id"] = [f"{lab}-{i // 3}" for i, lab in zip(range(len(df)), df["label"])]
    patients = df["patient_id"].unique()
    sex = dict(zip(patients, rng.choice(["F", "M"], len(patients))))
    age = dict(zip(patients, rng.integers(20, 80, len(patients))))
    df["sex"], df["age"] = df["patient_id"].map(sex), df["patient_id"].map(age)
    df["split"] = ["test" if int(p.split("-")[1]) % 3 == 0 else "train" for p in df["patient_id"]]
    manifest = root / "manifest.csv"
    df.to_csv(manifest, index=False)
    out = medlens.train(
        manifest, root / "run", model="cnn-small", epochs=3, image_size=32, batch_size=16, progress=False
    )
    return out


def test_calibrate_then_evaluate_on_test(run, monkeypatch, capsys, tmp_path):
    # The toy model separates its 9 validation cases perfectly, where no temperature fits (T runs off to 0
    # and calibrate refuses it); one mislabelled validation case gives the fit an optimum.
    manifest = run / "manifest.csv"
    original = manifest.read_text()
    df = pd.read_csv(manifest)
    first = df.index[df["split"] == "val"][0]
    df.loc[first, "label"] = {"cyst": "normal", "normal": "cyst"}[df.loc[first, "label"]]
    df.to_csv(manifest, index=False)
    try:
        code, out, err = run_cli(monkeypatch, capsys, "calibrate", run, "--quiet")
    finally:
        manifest.write_text(original)
    assert code == 0, err
    cal = json.loads((run / "calibration.json").read_text())
    assert cal["method"] == "temperature" and cal["fit_on"] == "val" and cal["T"] > 0
    assert cal["after"]["nll"] <= cal["before"]["nll"] + 1e-9  # fitted to minimise exactly this
    assert "temperature T =" in out

    code, out, err = run_cli(
        monkeypatch, capsys, "evaluate", run, "--split", "test", "-o", tmp_path / "e", "--quiet"
    )
    assert code == 0, err
    s = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert s["calibrated"] == {"method": "temperature", "T": cal["T"], "fit_on": "val"}
    assert set(s["calibration_change"]) == {"before", "after"}
    for key in ("ece", "ece_equal_mass", "classwise_ece", "brier", "nll", "bins"):
        assert key in s["calibration"]
    # the existing contract keys stay
    for key in ("metrics", "per_class", "confusion_matrix", "class_names", "bootstrap", "cases"):
        assert key in s
    rows = s["operating_points"]
    grid = [r for r in rows if r["target"] is None]
    assert [round(r["threshold"], 2) for r in grid] == [round(0.05 * i, 2) for i in range(1, 20)]
    assert all(r["class"] == "normal" for r in rows)  # binary: the second class is positive
    assert {"sensitivity", "specificity", "ppv", "npv", "f1", "lr_plus", "lr_minus", "flag_rate"} <= set(
        rows[0]
    )
    assert s["auc_delong"]["normal"]["method"] == "DeLong"
    # patients have 3 cases each: patient-level metrics over the patients
    assert s["patient_level"]["n_patients"] == len({c["patient_id"] for c in s["cases"]})
    assert s["model_card"]["file"] == "model_card.md"
    card = (tmp_path / "e" / "model_card.md").read_text()
    for item in (
        "Intended use",
        "How the splits were made",
        "Leakage check",
        "Calibration",
        "Known limitations",
    ):
        assert f"## {item}" in card
    assert "patient-level" in card
    html = (tmp_path / "e" / "report.html").read_text()
    for section in (
        "Calibration",
        "Operating points",
        "ROC AUC with DeLong intervals",
        "Patient level",
        "Model card",
    ):
        assert f"<h2>{section}</h2>" in html
    # back to raw probabilities
    assert run_cli(monkeypatch, capsys, "calibrate", run, "--reset")[0] == 0
    assert not (run / "calibration.json").exists()


def test_cohorts_readers_and_threshold(run, monkeypatch, capsys, tmp_path):
    test_cases = pd.read_csv(run / "manifest.csv").query("split == 'test'")
    y = (test_cases["label"] == "normal").to_numpy().astype(int)
    readers = simulate_readers(
        y, ["cyst", "normal"], {"r1": 0.95, "r2": 0.8, "r3": 0.6}, case_ids=test_cases["case_id"]
    )
    readers.to_csv(tmp_path / "readers.csv", index=False)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        run,
        "--split",
        "test",
        "-o",
        tmp_path / "e",
        "--cohorts",
        "sex,age:<40,40-60,>60",
        "--min-cell",
        "3",
        "--readers",
        tmp_path / "readers.csv",
        "--threshold",
        "0.3",
        "--quiet",
    )
    assert code == 0, err
    s = json.loads((tmp_path / "e" / "summary.json").read_text())
    sex = s["cohorts"]["columns"]["sex"]
    assert {g["name"] for g in sex["groups"]} == {"F", "M"}
    assert sum(g["n"] for g in sex["groups"]) == s["n_cases"]
    ref = next(g for g in sex["groups"] if g["name"] == sex["reference"])
    assert ref["ratio"]["accuracy"] == pytest.approx(1.0)
    assert [g["name"] for g in s["cohorts"]["columns"]["age"]["groups"]][:3] == ["<40", "40-60", ">60"]
    study = s["readers"]
    assert study["n_readers"] == 3 and study["cases_without_reader"] == 0
    kappa = {r["reader"]: r["kappa_vs_model"]["value"] for r in study["per_reader"]}
    assert set(kappa) == {"r1", "r2", "r3"}
    pair = {(p["a"], p["b"]): p["value"] for p in study["kappa_pairs"]}
    assert pair[("r1", "r2")] > pair[("r2", "r3")]  # the weak reader agrees least
    # the operating point is stored and used
    point = json.loads((run / "operating_point.json").read_text())
    assert point["class"] == "normal" and point["threshold"] == 0.3
    assert s["operating_point"]["row"]["threshold"] == pytest.approx(0.3)
    preds = pd.read_csv(tmp_path / "e" / "predictions.csv")
    expected = np.where(preds["p_normal"] >= 0.3, "normal", "cyst")
    assert (preds["prediction"] == expected).all()
    html = (tmp_path / "e" / "report.html").read_text()
    assert "<h2>Cohorts and fairness</h2>" in html and "<h2>Readers vs model</h2>" in html
    one = sorted((run.parent / "data").rglob("*.png"))[0]
    code, out, err = run_cli(monkeypatch, capsys, "predict", run, one, "--json")
    record = json.loads(out)[0]
    assert record["threshold"] == {"class": "normal", "threshold": 0.3}
    assert record["prediction"] == ("normal" if record["probabilities"]["normal"] >= 0.3 else "cyst")
    (run / "operating_point.json").unlink()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["--readers", "missing.csv"], "--readers file missing.csv not found"),
        (["--cohorts", "nosuchcolumn"], "nosuchcolumn"),
        (["--patient-agg", "median"], "--patient-agg must be one of"),
        (["--positive", "tumour"], "tumour"),
    ],
)
def test_bad_clinical_options_exit_2(run, monkeypatch, capsys, tmp_path, args, words):
    code, _out, err = run_cli(monkeypatch, capsys, "evaluate", run, "-o", tmp_path / "e", "--quiet", *args)
    assert code == 2
    assert words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_calibrate_refuses_the_test_split(run, monkeypatch, capsys):
    code, _out, err = run_cli(monkeypatch, capsys, "calibrate", run, "--split", "test")
    assert code == 2 and "test split" in err
