"""End-to-end CLI on tiny data: train 1 epoch → evaluate → predict → compare; bad input → one line, exit 2."""

from __future__ import annotations

import json
import sys

import pytest
from cli_helpers import run_cli

from medlens.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_folders):
    root = tmp_path_factory.mktemp("e2e")
    data = make_folders(root / "data", n_per_class=16, split_level=True)
    (data / "train" / "cyst" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    run = root / "run"
    mp = pytest.MonkeyPatch()
    mp.setattr(
        sys,
        "argv",
        [
            "medlens",
            "train",
            str(data),
            "-o",
            str(run),
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--quiet",
        ],
    )
    with pytest.raises(SystemExit) as e:
        main()
    mp.undo()
    assert e.value.code in (0, None)
    return root, data, run


def test_train_writes_complete_run(trained):
    _, _, run = trained
    for name in (
        "model.pt",
        "config.yaml",
        "manifest.csv",
        "history.csv",
        "summary.json",
        "report.html",
        "predictions.csv",
        "train.json",
        "figures/confusion_matrix.png",
        "figures/roc.png",
    ):
        assert (run / name).is_file(), name
    assert not run.with_name("run.partial").exists()
    s = json.loads((run / "summary.json").read_text())
    assert s["schema"] == "medlens.summary/1" and s["split"] == "test" and s["n_cases"] == 8
    assert set(s["metrics"]) >= {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "auc"}
    assert len(s["cases"]) == 8 and set(s["cases"][0]["probabilities"]) == {"cyst", "normal"}
    train_info = json.loads((run / "train.json").read_text())
    assert [x["case_id"] for x in train_info["skipped"]] == ["train/cyst/broken"]
    assert "broken" in (run / "report.html").read_text()


def test_evaluate_on_other_data_and_predict_and_compare(trained, monkeypatch, capsys, tmp_path, make_folders):
    _root, _data, run = trained
    other = make_folders(tmp_path / "other", n_per_class=5, seed=3)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        run,
        "--data",
        other,
        "-o",
        tmp_path / "ev",
        "--bootstrap",
        "50",
        "--quiet",
    )
    assert code == 0, err
    s = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert s["n_cases"] == 10 and s["split"] == "all"
    img = next((other / "cyst").glob("*.png"))
    code, out, err = run_cli(monkeypatch, capsys, "predict", run, img, "--json")
    assert code == 0, err
    result = json.loads(out)[0]
    assert (
        result["prediction"] in ("cyst", "normal") and abs(sum(result["probabilities"].values()) - 1) < 1e-5
    )
    code, out, err = run_cli(monkeypatch, capsys, "compare", run, run, "-o", tmp_path / "c.html")
    assert code == 0, err
    assert (tmp_path / "c.html").is_file()


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "{empty}", "-o", "{tmp}/r", "--quiet"], "no images found"),
        (["train", "{single}", "-o", "{tmp}/r", "--quiet"], "only one class"),
        (["train", "{data}", "-o", "{tmp}/r", "--model", "resnet-18"], "Did you mean 'resnet18'"),
        (["train", "{data}", "-o", "{tmp}/r", "--image-size", "3"], "--image-size must be between"),
        (["train", "{data}", "-o", "{tmp}/r", "--fraction", "1.5"], "--fraction must be in"),
        (["evaluate", "{tmp}/missing-run"], "run directory"),
        (["predict", "{tmp}/missing-run", "{data}/cyst/cyst_000.png"], "run directory"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, monkeypatch, capsys, tmp_path, make_folders):
    (tmp_path / "empty").mkdir()
    make_folders(tmp_path / "single", classes=("only",), n_per_class=3)
    make_folders(tmp_path / "data", n_per_class=3)
    fmt = {
        "tmp": tmp_path,
        "empty": tmp_path / "empty",
        "single": tmp_path / "single",
        "data": tmp_path / "data",
    }
    code, _out, err = run_cli(monkeypatch, capsys, *[a.format(**fmt) for a in args])
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_help_explains_every_option(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "train", "--help")
    assert code == 0
    for option in (
        "--model",
        "--fraction",
        "--class-weights",
        "--freeze-backbone",
        "--resume",
        "--audit-fix",
    ):
        assert option in out


def test_audit_fix_manifest_is_accepted_by_train(monkeypatch, capsys, tmp_path, make_folders):
    import shutil

    data = make_folders(tmp_path / "data", n_per_class=10, split_level=True)
    shutil.copy(data / "test" / "cyst" / "cyst_000.png", data / "train" / "cyst" / "leaked.png")
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "audit",
        data,
        "-o",
        tmp_path / "audit",
        "--fix",
        tmp_path / "clean.csv",
        "--quiet",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert any(g["cross_split"] for g in report["duplicates"]["groups"])
    assert (tmp_path / "audit" / "audit.html").is_file() and (tmp_path / "clean.csv").is_file()
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        tmp_path / "clean.csv",
        "-o",
        tmp_path / "run",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--quiet",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["split"] == "test"


def test_curve_trains_each_fraction_and_plots(monkeypatch, capsys, tmp_path, make_folders):
    data = make_folders(tmp_path / "data", n_per_class=12)
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "curve",
        data,
        "-o",
        tmp_path / "curve",
        "--fractions",
        "0.5,1.0",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--quiet",
    )
    assert code == 0, err
    table = (tmp_path / "curve" / "curve.csv").read_text().splitlines()
    assert len(table) == 3 and (tmp_path / "curve" / "curve.png").is_file()
    assert "0.5" in table[1] and "val" in table[1]


def test_summary_prints_parameters_and_macs(monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch, capsys, "summary", "logreg", "--input-size", "8", "--num-classes", "3"
    )
    assert code == 0, err
    assert "195" in out  # 64 pixels x 3 classes + 3 biases


@pytest.mark.parametrize("model", ["unet", "boxnet"])
def test_summary_of_segmentation_and_detection_models(model, monkeypatch, capsys):
    from medlens.models.summary import summarize

    code, out, err = run_cli(monkeypatch, capsys, "summary", model, "--input-size", "32", "--channels", "3")
    assert code == 0, err
    outputs = 2 if model == "unet" else 4  # two classes (background, foreground) or four box numbers
    expected = summarize(model, 32, in_channels=3, num_classes=outputs)["total_params"]
    assert f"{expected:,}" in out and "multiply-adds" in out
