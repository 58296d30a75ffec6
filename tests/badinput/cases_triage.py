"""Hostile-input cases of the second probe: triage (see docs/robustness.md, "Second probe: triage")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from badinput import make
from badinput.cases import Ctx, case

LONG_DESCRIPTION = "MONAI BasicUNet: the classic two-conv U-Net, 5 levels (2D/3D)"


def _day(ctx: Ctx, ids: list[str] | None = None, patients: list[str] | None = None) -> Path:
    """A manifest CSV of three of the shared run's images, with study ids and patients when given."""
    images = sorted((ctx.data() / "cyst").glob("*.png"))[:3]
    head = ["image", *(["study_id"] if ids else []), *(["patient_id"] if patients else [])]
    rows = [",".join(head)]
    for i, image in enumerate(images):
        rows.append(",".join([str(image), *([ids[i]] if ids else []), *([patients[i]] if patients else [])]))
    return make.csv(ctx.tmp / "day.csv", "\n".join(rows) + "\n")


def _triaged(ctx: Ctx, run: Path, inputs: list, name: str = "wl") -> Path:
    import medlens

    medlens.triage(run, inputs, ctx.tmp / name, explain=False, progress=False)
    return ctx.tmp / name


def _rows(ctx: Ctx, name: str = "wl") -> list[dict]:
    return json.loads((ctx.tmp / name / "worklist.json").read_text())["rows"]


def _history(ctx: Ctx, text: str) -> Path:
    return make.csv(ctx.tmp / "history.csv", text)


def _nothing_written(ctx: Ctx) -> None:
    assert not (ctx.tmp / "wl").exists(), "the refused triage wrote its folder"


# -- a prior positive dated in the future ------------------------------------------------------------------
def _future_prior_not_counted(ctx: Ctx, _out: str) -> None:
    row = next(r for r in _rows(ctx) if r["patient_id"] == "P2")
    assert row["contrib_prior_positive"] == 0.0, row
    assert "prior positive 2099-01-01 is after the study: not counted" in row["reason"], row["reason"]


case(
    "tri-history-prior-in-future",
    0,
    "prior_positive 2099-01-01 is after",
    check=_future_prior_not_counted,
    doc="medlens triage RUN day.csv --history history.csv -o wl (P2's prior_positive 2099-01-01)",
)(
    lambda ctx: [
        "triage",
        ctx.run,
        _day(ctx, patients=["P1", "P2", "P3"]),
        "--history",
        _history(ctx, "patient_id,prior_positive\nP1,2025-03\nP2,2099-01-01\n"),
        "-o",
        ctx.tmp / "wl",
        "--no-explain",
        "--quiet",
    ]
)
case(
    "tri-history-every-prior-in-future",
    2,
    "every prior_positive date is after",
    check=lambda ctx, _out: _nothing_written(ctx),
    doc="medlens triage RUN day.csv --history history.csv -o wl (every prior_positive in 2099)",
)(
    lambda ctx: [
        "triage",
        ctx.run,
        _day(ctx, patients=["P1", "P2", "P3"]),
        "--history",
        _history(ctx, "patient_id,prior_positive\nP1,2099-01-01\nP2,\n"),
        "-o",
        ctx.tmp / "wl",
        "--quiet",
    ]
)


# -- one study id given twice ------------------------------------------------------------------------------
def _nothing_read(ctx: Ctx, _out: str) -> None:
    assert all(r["status"] == "unread" for r in _rows(ctx)), _rows(ctx)


case(
    "tri-duplicate-study-id-numbered",
    0,
    "S1#2",
    where="wl/worklist.csv",
    doc="medlens triage RUN day.csv -o wl (study_id S1 on two rows)",
)(lambda ctx: ["triage", ctx.run, _day(ctx, ids=["S1", "S1", "S2"]), "-o", ctx.tmp / "wl", "--quiet"])
case(
    "tri-mark-read-ambiguous-id",
    2,
    "study 'S1' names 2 studies of the worklist",
    check=_nothing_read,
    doc="medlens mark-read wl S1 --reader dr-a (two studies were given the id S1)",
)(
    lambda ctx: [
        "mark-read",
        _triaged(ctx, ctx.run, [_day(ctx, ids=["S1", "S1", "S2"])]),
        "S1",
        "--reader",
        "dr-a",
    ]
)


# -- another run's worklist folder -------------------------------------------------------------------------
def _cls_rows_kept(ctx: Ctx, _out: str) -> None:
    data = json.loads((ctx.tmp / "wl" / "worklist.json").read_text())
    assert len(data["rows"]) == 3 and data["run"]["task"] == "classification", data["run"]


case(
    "tri-other-run-into-worklist",
    2,
    "holds the worklist of run",
    check=_cls_rows_kept,
    doc="medlens triage RUN3D vols/imagesTr -o wl (wl holds the classification run's list)",
)(
    lambda ctx: [
        "triage",
        ctx.run3d,
        ctx.spheres(2) / "imagesTr",
        "-o",
        _triaged(ctx, ctx.run, [_day(ctx)]),
        "--quiet",
    ]
)


# -- a second reader ---------------------------------------------------------------------------------------
def _second_read(ctx: Ctx) -> list:
    from medlens.triaging.worklist import mark_read

    out = _triaged(ctx, ctx.run, [_day(ctx, ids=["S1", "S2", "S3"])])
    mark_read(out, "S2", "dr-a", finding="cyst")
    return ["mark-read", out, "S2", "--reader", "dr-b", "--finding", "normal"]


def _both_reads_kept(ctx: Ctx, _out: str) -> None:
    row = next(r for r in _rows(ctx) if r["study"] == "S2")
    assert [(r["reader"], r["finding"]) for r in row["reads"]] == [("dr-a", "cyst"), ("dr-b", "normal")]
    assert row["read_by"] == "dr-b"


case(
    "tri-mark-read-second-reader",
    0,
    "already read by dr-a at",
    check=_both_reads_kept,
    doc="medlens mark-read wl S2 --reader dr-b --finding normal (dr-a read S2 before)",
)(_second_read)


# -- a real broken DICOM among good images -----------------------------------------------------------------
def _bad_dicom_day(ctx: Ctx) -> Path:
    from pydicom.data import get_testdata_file

    folder = ctx.tmp / "day"
    folder.mkdir()
    for image in sorted((ctx.data() / "cyst").glob("*.png"))[:2]:
        shutil.copy(image, folder / image.name)
    shutil.copy(get_testdata_file("badVR.dcm"), folder / "badVR.dcm")
    return folder


def _bad_dicom_first(ctx: Ctx, _out: str) -> None:
    bad, *good = _rows(ctx)
    assert bad["input"].endswith("badVR.dcm") and bad["reason"].startswith("read first, unreadable: ")
    assert len(good) == 2 and all(r["reason"].startswith("p(") for r in good), good


case(
    "tri-real-broken-dicom-in-batch",
    0,
    "1 unreadable study kept at the top",
    check=_bad_dicom_first,
    doc="medlens triage RUN day/ -o wl (two images and pydicom-data's badVR.dcm)",
)(lambda ctx: ["triage", ctx.run, _bad_dicom_day(ctx), "-o", ctx.tmp / "wl", "--no-explain", "--quiet"])


# -- a kaggle_3m patient missing a slice -------------------------------------------------------------------
def _kaggle_gap(ctx: Ctx, every: bool = False) -> Path:
    from seg_phantoms import make_kaggle

    root = make_kaggle(ctx.tmp / "kaggle", n_patients=2, n_slices=4, size=16)
    for patient in ("P00", "P01") if every else ("P00",):
        (root / patient / f"{patient}_3.tif").unlink()
        (root / patient / f"{patient}_3_mask.tif").unlink()
    return root


def _only_whole_patient(ctx: Ctx, _out: str) -> None:
    assert sorted(p.name for p in (ctx.tmp / "vols" / "imagesTr").iterdir()) == ["P01.nii.gz"]


case(
    "tri-kaggle-missing-slice",
    0,
    "skipped patient P00: slice 3 of 4 missing",
    check=_only_whole_patient,
    doc="medlens convert slices-to-volumes kaggle vols (P00_3.tif and its mask removed)",
)(lambda ctx: ["convert", "slices-to-volumes", _kaggle_gap(ctx), ctx.tmp / "vols", "--quiet"])
case(
    "tri-kaggle-every-patient-missing-a-slice",
    2,
    "each misses a slice (e.g. P00: slice 3 of 4 missing",
    doc="medlens convert slices-to-volumes kaggle vols (slice 3 of every patient removed)",
)(lambda ctx: ["convert", "slices-to-volumes", _kaggle_gap(ctx, every=True), ctx.tmp / "vols", "--quiet"])


# -- tables piped into a file ------------------------------------------------------------------------------
def _one_line_per_model(_ctx: Ctx, out: str) -> None:
    from medlens.models.registry import list_models

    for m in list_models(None):
        assert any(m.name in line and m.description in line for line in out.splitlines()), m.name


case("tri-models-piped", 0, LONG_DESCRIPTION, check=_one_line_per_model, doc="medlens models | cat")(
    lambda ctx: ["models"]
)


def _long_path(ctx: Ctx) -> Path:
    folder = ctx.tmp / ("a-folder-with-a-rather-long-name-" * 3) / "and-another-long-sub-folder-name"
    folder.mkdir(parents=True)
    return make.gray_png(folder / "an-image-whose-name-is-long-enough-to-be-cut.png")


case(
    "tri-predict-table-piped",
    0,
    "and-another-long-sub-folder-name/an-image-whose-name-is-long-enough-to-be-cut.png",
    doc="medlens predict RUN <a path of 200 characters>.png | cat",
)(lambda ctx: ["predict", ctx.run, _long_path(ctx)])
