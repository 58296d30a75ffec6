"""One bad file costs its own row only (predict, evaluate --data, explain, triage, audit); predict takes
folders, carries the run's out-of-distribution flag and the reader's notes; the leakage check of a copied run
finds its data or says it could not; predictions.csv keeps probabilities at full precision."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from pydicom.data import get_testdata_file

import medlens
import medlens.io.images as images

BAD_NAME = "weird.png"


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_folders, one_thread):
    root = tmp_path_factory.mktemp("batches")
    data = make_folders(root / "data", n_per_class=6, size=16)
    run = medlens.train(data, root / "run", model="logreg", epochs=1, image_size=16, progress=False)
    return {"root": root, "data": data, "run": run}


def _broken(kind: str, folder: Path, good: Path, monkeypatch) -> Path:
    """A file the reader fails on: the real badVR.dcm (NumberOfFrames '1A'), or a copy of ``good`` whose
    decoder is made to raise an exception no reader maps (a decoder bug a new file might trigger)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "badVR":
        return Path(shutil.copy(get_testdata_file("badVR.dcm"), folder / "badVR.dcm"))
    path = Path(shutil.copy(good, folder / BAD_NAME))
    real = images._read_pillow
    error = {"ValueError": ValueError, "RuntimeError": RuntimeError}[kind]

    def failing(p, *args, **kwargs):
        if Path(p).name == BAD_NAME:
            raise error("decoder exploded")
        return real(p, *args, **kwargs)

    monkeypatch.setattr(images, "_read_pillow", failing)
    return path


def _bad_row_says(row_error: str, kind: str) -> None:
    assert row_error
    if kind != "badVR":  # the type and message of what was raised are kept: a bug is never hidden
        assert f"{kind}: decoder exploded" in row_error


KINDS = ["badVR", "ValueError", "RuntimeError"]


@pytest.mark.parametrize("kind", KINDS)
def test_predict_batch_survives_a_bad_file(monkeypatch, capsys, world, tmp_path, kind):
    good = next(world["data"].rglob("*.png"))
    bad = _broken(kind, tmp_path / "in", good, monkeypatch)
    code, out, err = run_cli(monkeypatch, capsys, "predict", world["run"], good, bad, "--json")
    assert code == 2 and "internal error" not in err, err
    rows = json.loads(out)
    assert rows[0]["path"] == str(good) and rows[0]["prediction"] in ("cyst", "normal")
    assert rows[1]["path"] == str(bad)
    _bad_row_says(rows[1]["error"], kind)


@pytest.mark.parametrize("kind", KINDS)
def test_explain_and_triage_batches_survive_a_bad_file(monkeypatch, capsys, world, tmp_path, kind):
    good = next(world["data"].rglob("*.png"))
    bad = _broken(kind, tmp_path / "in", good, monkeypatch)
    code, out, err = run_cli(
        monkeypatch, capsys, "explain", world["run"], good, bad, "-o", tmp_path / "ex", "--json"
    )
    assert code == 2 and "internal error" not in err, err
    cases = json.loads(out)["cases"]
    assert "prediction" in cases[0] and "error" in cases[1]
    _bad_row_says(cases[1]["error"], kind)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "triage",
        world["run"],
        good,
        bad,
        "-o",
        tmp_path / "wl",
        "--json",
        "--no-explain",
    )
    assert code == 0 and "internal error" not in err, err
    rows = {r["input"]: r for r in json.loads(out)["rows"]}
    assert rows[str(bad)]["unreadable"] and not rows[str(good)]["unreadable"]


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_and_audit_batches_survive_a_bad_file(monkeypatch, capsys, world, tmp_path, kind):
    data = shutil.copytree(world["data"], tmp_path / "data")
    bad = _broken(kind, data / "cyst", next(data.rglob("*.png")), monkeypatch)
    code, _out, err = run_cli(
        monkeypatch, capsys, "evaluate", world["run"], "--data", data, "-o", tmp_path / "ev",
        "--bootstrap", "10", "--quiet",
    )  # fmt: skip
    assert code == 0 and "internal error" not in err, err
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["n_cases"] == 12
    assert [Path(s["path"]).name for s in summary["skipped"]] == [bad.name]
    code, _out, err = run_cli(monkeypatch, capsys, "audit", data, "-o", tmp_path / "au", "--quiet")
    assert code == 0 and "internal error" not in err, err
    audit = json.loads((tmp_path / "au" / "audit.json").read_text())
    unreadable = (
        [u["path"] for u in audit["unreadable"]] if isinstance(audit.get("unreadable"), list) else None
    )
    assert unreadable is None or any(bad.name in p for p in unreadable)
    assert bad.name in (tmp_path / "au" / "audit.json").read_text()


def test_predict_takes_a_folder_like_explain(monkeypatch, capsys, world):
    folder = world["data"] / "normal"
    code, out, err = run_cli(monkeypatch, capsys, "predict", world["run"], folder, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in folder.glob("*.png"))
    assert all("prediction" in r for r in rows)


def test_predict_carries_the_runs_ood_flag(monkeypatch, capsys, world, tmp_path):
    from PIL import Image

    odd = tmp_path / "odd.png"
    Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]] * 3, dtype=np.uint8)).save(odd)
    good = next(world["data"].rglob("*.png"))
    code, out, err = run_cli(monkeypatch, capsys, "predict", world["run"], good, odd, "--json")
    assert code == 0, err
    rows = json.loads(out)
    for row in rows:
        assert set(row["ood"]) == {"score", "flag", "percentile", "threshold", "reason"}
    assert rows[1]["ood"]["score"] > rows[0]["ood"]["score"]
    # the same flag as explain gives for the same image
    explained = medlens.explain(world["run"], [odd], tmp_path / "ex", progress=False)
    assert explained["cases"][0]["ood"] == rows[1]["ood"]
    code, out, err = run_cli(monkeypatch, capsys, "predict", world["run"], odd)
    assert code == 0 and "OOD" in out


def test_predict_says_when_it_reads_frame_one_of_a_multiframe_file(monkeypatch, capsys, world):
    path = get_testdata_file("emri_small.dcm")  # 10 frames of MR
    code, out, err = run_cli(monkeypatch, capsys, "predict", world["run"], path, "--json")
    assert code == 0, err
    [row] = json.loads(out)
    assert any("frame 1" in note for note in row["read_notes"]), row
    code, out, err = run_cli(monkeypatch, capsys, "predict", world["run"], path)
    assert code == 0 and "frame 1 was used" in err


def test_leakage_check_of_a_copied_run_finds_its_data_or_says_it_could_not(
    monkeypatch, capsys, world, tmp_path
):
    copy = shutil.copytree(world["run"], tmp_path / "elsewhere" / "run")
    ev = ["--bootstrap", "10", "--quiet"]
    code, out, err = run_cli(
        monkeypatch, capsys, "evaluate", copy, "--data", world["data"], "-o", tmp_path / "a", *ev
    )
    assert code == 0, err
    dd = json.loads((tmp_path / "a" / "summary.json").read_text())["metrics_deduplicated"]
    assert dd["check"] == "complete" and dd["n_reference"] == dd["n_reference_total"] == 12
    assert dd["n_exact"] == 12  # the evaluated images are the training images themselves
    moved = world["root"] / "data-moved"
    world["data"].rename(moved)
    try:
        code, out, err = run_cli(
            monkeypatch, capsys, "evaluate", copy, "--data", moved, "-o", tmp_path / "b", *ev
        )
    finally:
        moved.rename(world["data"])
    assert code == 0, err
    dd = json.loads((tmp_path / "b" / "summary.json").read_text())["metrics_deduplicated"]
    assert dd["check"] == "not run" and dd["n_reference"] == 0 and "none of the run's 12" in dd["warning"]
    assert dd["metrics"] == {}  # no score "without copies" claimed from a check that compared with nothing
    assert "warning: leakage check not run" in err and "0 exact" not in out


def test_predictions_csv_keeps_full_precision(monkeypatch, capsys, world, tmp_path):
    code, _out, err = run_cli(
        monkeypatch, capsys, "evaluate", world["run"], "--data", world["data"], "-o", tmp_path / "ev",
        "--bootstrap", "10", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(tmp_path / "ev" / "predictions.csv", float_precision="round_trip")
    cases = json.loads((tmp_path / "ev" / "summary.json").read_text())["cases"]
    by_id = {c["case_id"]: c["probabilities"] for c in cases}
    for row in table.itertuples(index=False):
        assert row.p_cyst == by_id[row.case_id]["cyst"] and row.p_normal == by_id[row.case_id]["normal"]
    values = table[["p_cyst", "p_normal"]].to_numpy().ravel()
    assert (np.round(values, 6) != values).any()  # more than 6 decimals survive the file


def test_a_copied_run_evaluates_its_own_split_and_flags_ood(monkeypatch, capsys, world, tmp_path):
    copy = shutil.copytree(world["run"], tmp_path / "elsewhere" / "run")
    for name in ("explain_index.npz", "explain_index.json"):  # the index is rebuilt from the training images
        (copy / name).unlink(missing_ok=True)
    code, _out, err = run_cli(monkeypatch, capsys, "evaluate", copy, "--bootstrap", "10", "--quiet")
    assert code == 0, err
    assert json.loads((copy / "summary.json").read_text())["n_cases"] > 0
    code, out, err = run_cli(
        monkeypatch, capsys, "predict", copy, next(world["data"].rglob("*.png")), "--json"
    )
    assert code == 0, err
    assert "flag" in json.loads(out)[0]["ood"]
