"""Hostile-input cases of the second probe: outputs (see docs/robustness.md, "Second probe: outputs")."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file

from badinput.cases import Ctx, case, one_line_error, sources_kept


def _copy_run(ctx: Ctx, name: str = "run_b") -> Path:
    """A copy of the shared run under the case's folder (the shared one is never written to)."""
    return Path(shutil.copytree(ctx.run, ctx.tmp / name))


def _csv(ctx: Ctx) -> Path:
    data = ctx.data()
    path = ctx.tmp / "t.csv"
    rows = [f"{p.relative_to(ctx.tmp).as_posix()},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    path.write_text("image,label\n" + "\n".join(rows) + "\n")
    return path


def _foreign(ctx: Ctx) -> Path:
    folder = ctx.tmp / "mine"
    folder.mkdir()
    (folder / "thesis.docx").write_text("keep me")
    return folder


def _image(ctx: Ctx) -> Path:
    return next(ctx.data().rglob("*.png"))


# -- plan -o ---------------------------------------------------------------------------------------
case("out-plan-over-source-csv", 2, "writing there would destroy the input", check=sources_kept("t.csv"))(
    lambda ctx: ["plan", (c := _csv(ctx)), "-o", c, "--no-probe"]
)
case("out-plan-into-run-manifest", 2, "a run folder medlens wrote for something else")(
    lambda ctx: ["plan", ctx.data(), "-o", _copy_run(ctx) / "manifest.csv", "--no-probe"]
)
case("out-plan-to-folder", 2, "is a folder; give a file path for the plan JSON", check=one_line_error)(
    lambda ctx: ["plan", ctx.data(), "-o", ctx.tmp, "--no-probe"]
)


def _under_file(ctx: Ctx) -> list:
    (ctx.tmp / "notes.txt").write_text("mine")
    return ["plan", ctx.data(), "-o", ctx.tmp / "notes.txt" / "plan.json", "--no-probe"]


case("out-plan-under-file", 2, "notes.txt is a file, not a folder", check=one_line_error)(_under_file)


def _foreign_json(ctx: Ctx) -> list:
    (ctx.tmp / "settings.json").write_text('{"mine": true}')
    return ["plan", ctx.data(), "-o", ctx.tmp / "settings.json", "--no-probe"]


case(
    "out-plan-over-foreign-json", 2, "is not a plan JSON medlens wrote", check=sources_kept("settings.json")
)(_foreign_json)

# -- evaluate -o -----------------------------------------------------------------------------------
case("out-evaluate-into-other-run", 2, "is a run folder medlens wrote for something else")(
    lambda ctx: ["evaluate", ctx.run, "-o", _copy_run(ctx), "--quiet"]
)
case("out-evaluate-into-data-source", 2, "writing there would destroy the input")(
    lambda ctx: ["evaluate", ctx.run, "--data", (d := ctx.data()), "-o", d, "--quiet"]
)
case("out-evaluate-into-dataset", 2, "is not an evaluation folder medlens wrote")(
    lambda ctx: ["evaluate", ctx.run, "-o", ctx.data(), "--quiet"]
)
case("out-evaluate-into-run-training-data", 2, "lies inside the source folder")(
    lambda ctx: ["evaluate", ctx.run, "-o", ctx.run.parent / "data" / "figures", "--quiet"]
)

# -- the other commands' -o ------------------------------------------------------------------------
case("out-ingest-over-run-manifest", 2, "a run folder medlens wrote for something else")(
    lambda ctx: ["ingest", ctx.data(), "-o", _copy_run(ctx) / "manifest.csv"]
)


def _foreign_csv(ctx: Ctx) -> list:
    (ctx.tmp / "labels.csv").write_text("path,diagnosis\na.png,x\n")
    return ["ingest", ctx.data(), "-o", ctx.tmp / "labels.csv"]


case(
    "out-ingest-over-foreign-csv", 2, "is not a manifest CSV medlens wrote", check=sources_kept("labels.csv")
)(_foreign_csv)


def _foreign_html(ctx: Ctx) -> list:
    (ctx.tmp / "page.html").write_text("<html><title>my page</title></html>")
    return ["compare", ctx.run, ctx.run, "-o", ctx.tmp / "page.html"]


case("out-compare-over-foreign-html", 2, "is not a medlens HTML report")(_foreign_html)
case("out-compare-into-run", 2, "a run folder medlens wrote for something else")(
    lambda ctx: ["compare", ctx.run, ctx.run, "-o", _copy_run(ctx) / "report.html"]
)
case("out-audit-into-run", 2, "is a run folder medlens wrote for something else")(
    lambda ctx: ["audit", ctx.data(), "-o", _copy_run(ctx), "--quiet"]
)
case("out-audit-into-foreign-folder", 2, "is not an audit folder medlens wrote")(
    lambda ctx: ["audit", ctx.data(), "-o", _foreign(ctx), "--quiet"]
)
case("out-predict-into-other-run", 2, "is a run folder medlens wrote for something else")(
    lambda ctx: ["predict", ctx.run, _image(ctx), "-o", _copy_run(ctx)]
)
case("out-explain-into-foreign-folder", 2, "is not an explanations folder medlens wrote")(
    lambda ctx: ["explain", ctx.run, _image(ctx), "-o", _foreign(ctx)]
)
case("out-triage-into-foreign-folder", 2, "is not a worklist folder medlens wrote")(
    lambda ctx: ["triage", ctx.run, _image(ctx), "-o", _foreign(ctx), "--no-explain"]
)
case("out-curve-into-foreign-folder", 2, "is not a curve folder medlens wrote")(
    lambda ctx: ["curve", ctx.data(), "-o", _foreign(ctx), "--quiet"]
)


# -- predict: folders, the OOD flag, read notes ----------------------------------------------------
case("out-predict-folder", 0, '"prediction"')(
    lambda ctx: ["predict", ctx.run, ctx.data() / "normal", "--json"]
)


def _odd(ctx: Ctx) -> list:
    path = ctx.tmp / "odd.png"
    Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]] * 3, dtype=np.uint8)).save(path)
    return ["predict", ctx.run, path, "--json"]


case("out-predict-ood-flag", 0, '"ood": {')(_odd)
case("out-predict-multiframe-note", 0, "multi-frame DICOM (10 frames); frame 1 was used")(
    lambda ctx: ["predict", ctx.run, get_testdata_file("emri_small.dcm")]
)


# -- batches with one broken file (pydicom's badVR.dcm: NumberOfFrames '1A') -----------------------
def _bad(ctx: Ctx, folder: Path | None = None) -> Path:
    folder = folder or ctx.tmp
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(get_testdata_file("badVR.dcm"), folder / "badVR.dcm"))


def _good_row_kept(ctx: Ctx, out: str) -> None:
    rows, _ = json.JSONDecoder().raw_decode(out[out.index("[") :])
    assert "prediction" in rows[0] and "error" in rows[1], rows


case("out-predict-batch-bad-file", 2, "badVR.dcm", check=_good_row_kept)(
    lambda ctx: ["predict", ctx.run, _image(ctx), _bad(ctx), "--json"]
)
case("out-explain-batch-bad-file", 2, "error: cannot read")(
    lambda ctx: ["explain", ctx.run, _image(ctx), _bad(ctx), "-o", ctx.tmp / "ex"]
)
case("out-triage-batch-bad-file", 0, "1 unreadable study kept at the top of the list")(
    lambda ctx: ["triage", ctx.run, _image(ctx), _bad(ctx), "-o", ctx.tmp / "wl", "--no-explain"]
)


def _data_with_bad(ctx: Ctx) -> Path:
    data = ctx.data()
    _bad(ctx, data / "cyst")
    return data


case("out-evaluate-batch-bad-file", 0, "skipped 1 of 13 files")(
    lambda ctx: ["evaluate", ctx.run, "--data", _data_with_bad(ctx), "-o", ctx.tmp / "ev", "--quiet"]
)
case("out-audit-batch-bad-file", 0, "badVR.dcm")(
    lambda ctx: ["audit", _data_with_bad(ctx), "-o", ctx.tmp / "au", "--quiet"]
)


# -- the leakage check of a copied run -------------------------------------------------------------
case("out-evaluate-copied-run-finds-data", 0, "without copies of the training data")(
    lambda ctx: ["evaluate", _copy_run(ctx, "elsewhere"), "--data", ctx.data(), "-o", ctx.tmp / "ev",
                 "--bootstrap", "10", "--quiet"]
)  # fmt: skip


def _lost_data(ctx: Ctx) -> list:
    run = _copy_run(ctx, "elsewhere")
    info = json.loads((run / "train.json").read_text())
    info["manifest_root"] = str(ctx.tmp / "gone")
    (run / "train.json").write_text(json.dumps(info))
    (run / "manifest.csv").write_text((run / "manifest.csv").read_text().replace("../data/", "../nowhere/"))
    return ["evaluate", run, "--data", ctx.data(), "-o", ctx.tmp / "ev", "--bootstrap", "10", "--quiet"]


case("out-evaluate-copied-run-lost-data", 0, "warning: leakage check not run: none of the run's")(_lost_data)
