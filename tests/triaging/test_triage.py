"""`medlens triage` end to end on tiny runs: every study ranked exactly once, unreadable ones first, history
and DICOM headers used, read status kept across runs, the simulated day, and the CLI."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from seg_phantoms import make_kaggle

import medlens
from medlens.errors import MedlensError
from medlens.triaging.config import TriageConfig
from medlens.triaging.run import dicom_header

NOW = datetime(2026, 12, 3, 12, 0)


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """Tiny models on a busy machine: one thread."""


@pytest.fixture(scope="module")
def day(tmp_path_factory, make_folders):
    """A tiny 3-class run (cyst urgent, normal not, band urgent) and a day's manifest of its images with
    patients, arrival times, referral and truth, plus one broken and one missing file."""
    root = tmp_path_factory.mktemp("triage")
    data = make_folders(root / "data", classes=("cyst", "normal", "band"), n_per_class=16, size=32)
    run = medlens.train(
        data, root / "run", model="cnn-small", epochs=5, image_size=32, batch_size=8, seed=0, progress=False
    )
    images = [p for cls in ("cyst", "normal", "band") for p in sorted((data / cls).glob("*.png"))[:4]]
    rng = np.random.default_rng(1)
    order = rng.permutation(len(images))
    rows = []
    for i, j in enumerate(order):
        p = images[j]
        rows.append(
            {
                "image": str(p),
                "label": p.parent.name,
                "patient_id": f"P{i:02d}",
                "study_time": (NOW - timedelta(minutes=10 * (len(order) - i))).isoformat(),
                "split": "val",
            }
        )
    broken = root / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rows.append({"image": str(broken), "label": "normal", "patient_id": "PX", "split": "val"})
    rows.append({"image": str(root / "gone.png"), "label": "normal", "patient_id": "PY", "split": "val"})
    manifest = root / "day.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    history = root / "history.csv"
    history.write_text(
        "patient_id,age,sex,prior_positive,referral_priority\nP03,70,F,2026-05-01,stat\nP04,40,M,,routine\n"
    )
    return root, run, manifest, history, rows


def test_every_study_is_ranked_once_and_unreadable_ones_come_first(day, tmp_path):
    _root, run, manifest, history, rows = day
    result = medlens.triage(run, [manifest], tmp_path / "wl", history=history, now=NOW, progress=False)
    given = [str(__import__("os").path.normpath(r["image"])) for r in rows]
    assert sorted(r["input"] for r in result["rows"]) == sorted(given)  # none dropped, none doubled
    assert [r["rank"] for r in result["rows"]] == list(range(1, len(rows) + 1))
    top = result["rows"][:2]
    assert all(r["unreadable"] and r["priority"] == "read first, unreadable" for r in top)
    assert {r["input"].rsplit("/", 1)[-1] for r in top} == {"broken.png", "gone.png"}
    assert all(r["reason"].startswith("read first, unreadable: ") for r in top)
    priorities = [r["priority"] for r in result["rows"][2:]]
    assert priorities == sorted(priorities, reverse=True)
    for r in result["rows"][2:]:
        contrib = sum(r[f"contrib_{f}"] for f in TriageConfig().factors)
        assert r["priority"] == pytest.approx(contrib, abs=1e-3)  # every weight shown adds up
        assert r["reason"].startswith("p(") and "waited" in r["reason"]
        assert (tmp_path / "wl" / r["explain_png"]).is_file()
    stat = next(r for r in result["rows"] if r["patient_id"] == "P03")
    assert (
        stat["contrib_referral"] == 3.0
        and stat["contrib_prior_positive"] == 2.0
        and stat["contrib_age"] == 1.0
    )
    assert "stat referral" in stat["reason"] and "prior positive 2026-05" in stat["reason"]
    with open(tmp_path / "wl" / "worklist.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [t["input"] for t in table] == [r["input"] for r in result["rows"]]
    html = (tmp_path / "wl" / "worklist.html").read_text()
    assert "read first, unreadable" in html and "explanations/" in html
    data = json.loads((tmp_path / "wl" / "worklist.json").read_text())
    assert data["config"]["weights"]["finding"] == 10.0 and len(data["rows"]) == len(rows)


def test_urgent_classes_change_the_finding_and_the_ranking_is_deterministic(day, tmp_path):
    _root, run, manifest, _history, _rows = day
    a = medlens.triage(
        run, [manifest], tmp_path / "a", urgent=["cyst"], now=NOW, explain=False, progress=False
    )
    b = medlens.triage(
        run, [manifest], tmp_path / "b", urgent=["cyst"], now=NOW, explain=False, progress=False
    )
    assert [r["input"] for r in a["rows"]] == [r["input"] for r in b["rows"]]
    readable = [r for r in a["rows"] if not r["unreadable"]]
    assert all(r["reason"].startswith("p(cyst)") for r in readable)
    with pytest.raises(MedlensError, match="not classes of this model"):
        medlens.triage(run, [manifest], tmp_path / "c", urgent=["glioma"], progress=False)


def test_read_status_survives_a_rerun_with_new_studies(day, tmp_path, monkeypatch, capsys):
    root, run, manifest, _history, _rows = day
    out = tmp_path / "wl"
    first = medlens.triage(run, [manifest], out, now=NOW, explain=False, progress=False)
    study = first["rows"][3]["study"]
    code, _text, err = run_cli(
        monkeypatch, capsys, "mark-read", out, study, "--reader", "dr-a", "--finding", "ok"
    )
    assert code == 0, err
    extra = sorted((root / "data" / "band").glob("*.png"))[-1]
    again = medlens.triage(run, [manifest, extra], out, now=NOW, explain=False, progress=False)
    assert len(again["rows"]) == len(first["rows"]) + 1
    by_study = {r["study"]: r for r in again["rows"]}
    assert by_study[study]["status"] == "read" and by_study[study]["read_by"] == "dr-a"
    assert sum(r["status"] == "read" for r in again["rows"]) == 1


def test_simulated_day_reports_urgent_waits_against_fifo(day, tmp_path):
    _root, run, manifest, _history, rows = day
    result = medlens.triage(
        run,
        [manifest],
        tmp_path / "wl",
        split="val",
        evaluate=True,
        explain=False,
        n_bootstrap=100,
        progress=False,
    )
    ev = result["evaluation"]
    labels = [r["label"] for r in rows]
    assert ev["n"] == len(rows) and ev["n_urgent"] == sum(lab in {"cyst", "band"} for lab in labels)
    for order in ("medlens", "fifo"):
        assert set(ev[order]["median"]) == {"value", "ci95"} and ev[order]["mean"]["value"] > 0
    assert 0.0 <= ev["auc"] <= 1.0 and "difference" in ev
    assert json.loads((tmp_path / "wl" / "evaluation.json").read_text())["n"] == len(rows)
    with pytest.raises(MedlensError, match="no input row is in split 'test'"):
        medlens.triage(run, [manifest], tmp_path / "x", split="test", progress=False)


def test_dicom_header_gives_patient_age_sex_and_study_time(day, tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    _root, run, _manifest, _history, _rows = day
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientAge, ds.PatientSex = "MR", "DCM1", "071Y", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyInstanceUID = "20261203", "093000", generate_uid()
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (np.random.default_rng(0).normal(600, 100, (32, 32)).clip(0)).astype(np.uint16).tobytes()
    path = tmp_path / "study.dcm"
    ds.save_as(path, enforce_file_format=True)
    header = dicom_header(path)
    assert header["PatientAge"] == "071Y" and header["StudyDate"] == "20261203"
    result = medlens.triage(run, [path], tmp_path / "wl", now=NOW, explain=False, progress=False)
    [row] = result["rows"]
    assert row["patient_id"] == "DCM1" and row["study"] == ds.StudyInstanceUID
    assert row["contrib_age"] == 1.0 and row["wait_minutes"] == pytest.approx(150.0)
    assert "age 71" in row["reason"] and "waited 2 h 30 min" in row["reason"]


def test_a_real_broken_dicom_stays_on_the_list_beside_the_good_images(day, tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    root, run, _manifest, _history, _rows = day
    folder = tmp_path / "day"
    folder.mkdir()
    for p in sorted((root / "data" / "cyst").glob("*.png"))[:3]:
        shutil.copy(p, folder / p.name)
    shutil.copy(get_testdata_file("badVR.dcm"), folder / "badVR.dcm")  # NumberOfFrames '1A'
    result = medlens.triage(run, [folder], tmp_path / "wl", now=NOW, explain=False, progress=False)
    assert len(result["rows"]) == 4 and result["n_unreadable"] == 1
    bad, *good = result["rows"]
    assert bad["input"].endswith("badVR.dcm") and bad["unreadable"]
    assert bad["reason"].startswith("read first, unreadable: ")
    assert "1A" in bad["reason"] or "NumberOfFrames" in bad["reason"]  # says what is wrong with it
    assert all(not r["unreadable"] and r["reason"].startswith("p(") for r in good)


def test_history_dates_in_the_future_are_no_prior(day, tmp_path):
    _root, run, manifest, _history, _rows = day
    history = tmp_path / "history.csv"
    history.write_text("patient_id,prior_positive\nP03,2099-01-01\nP04,2026-05-01\n")
    result = medlens.triage(run, [manifest], tmp_path / "wl", history=history, now=NOW, explain=False)
    assert result["warnings"] == [
        f"history CSV {history} row 2: prior_positive 2099-01-01 is after 2026-12-03, so it is no prior "
        "finding; it is not counted (fix the date)"
    ]
    by_patient = {r["patient_id"]: r for r in result["rows"]}
    assert by_patient["P03"]["contrib_prior_positive"] == 0.0
    assert "prior positive 2099-01-01 is after the study: not counted" in by_patient["P03"]["reason"]
    assert by_patient["P04"]["contrib_prior_positive"] == 2.0
    history.write_text("patient_id,prior_positive\nP03,2099-01-01\n")
    with pytest.raises(MedlensError, match="every prior_positive date is after 2026-12-03"):
        medlens.triage(run, [manifest], tmp_path / "w2", history=history, now=NOW, explain=False)
    assert not (tmp_path / "w2").exists()


def test_a_segmentation_run_ranks_by_lesion(tmp_path, day):
    data = make_kaggle(tmp_path / "data", n_patients=6, n_slices=6, size=32)
    run = medlens.train(
        data,
        tmp_path / "seg",
        task="segmentation",
        model="unet",
        image_size=32,
        epochs=6,
        batch_size=8,
        lr=0.01,
        seed=0,
        model_args={"channels": [8, 16, 32], "num_res_units": 1},
        progress=False,
    )
    result = medlens.triage(run, [data / "P00"], tmp_path / "wl", now=NOW, progress=False)
    assert len(result["rows"]) == 6 and result["task"] == "segmentation"
    for r in result["rows"]:
        assert r["reason"].startswith(("lesion", "no lesion"))
    with pytest.raises(MedlensError, match="apply to classification runs"):
        medlens.triage(run, [data / "P00"], tmp_path / "x", urgent=["tumour"], progress=False)
    # the folder holds the segmentation run's list: a classification run's rows are not mixed into it
    before = (tmp_path / "wl" / "worklist.json").read_bytes()
    _root, cls_run, manifest, _history, _rows = day
    with pytest.raises(MedlensError, match=r"holds the worklist of run .*seg \(segmentation\)"):
        medlens.triage(cls_run, [manifest], tmp_path / "wl", now=NOW, explain=False, progress=False)
    assert (tmp_path / "wl" / "worklist.json").read_bytes() == before


def test_cli_triage_prints_the_list_and_refuses_bad_input(day, tmp_path, monkeypatch, capsys):
    _root, run, manifest, _history, _rows = day
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "triage",
        run,
        manifest,
        "-o",
        tmp_path / "wl",
        "--no-explain",
        "--evaluate",
        "--bootstrap",
        "50",
        "--quiet",
    )
    assert code == 0, err
    assert (
        "2 unreadable studies kept at the top" in out and "first-in-first-out" in out and "ranking AUC" in out
    )
    code, out, err = run_cli(
        monkeypatch, capsys, "triage", run, manifest, "-o", tmp_path / "w2", "--now", "noon"
    )
    assert code == 2 and "ISO 8601" in err and "Traceback" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights:\n  finding: -1\n")
    code, out, err = run_cli(
        monkeypatch, capsys, "triage", run, manifest, "-o", tmp_path / "w3", "--config", bad
    )
    assert code == 2 and "bad.yaml" in err
