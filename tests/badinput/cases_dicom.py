"""Hostile-input cases of the second probe: dicom (see docs/robustness.md, "Second probe: dicom").

Real files from pydicom-data, copied into each case's folder: big-endian palette colour, a malformed header
value, a file without its file meta group, non-image objects (structured report, RT plan), compressed
syntaxes, an unknown transfer syntax, and a DICOM series whose pixel spacing is 0.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from badinput.cases import Ctx, case, one_line_error, predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the generated DICOM series
from dicom_helpers import write_series


def _copy(ctx: Ctx, name: str, as_name: str | None = None, folder: Path | None = None) -> Path:
    from pydicom.data import get_testdata_file

    target = (folder or ctx.tmp) / (as_name or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(get_testdata_file(name), target)
    return target


def _no_file_meta(ctx: Ctx) -> Path:
    """CT_small.dcm written without preamble and file meta group (implicit VR little endian)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.filewriter import dcmwrite

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.file_meta
    ds.preamble = None
    dcmwrite(ctx.tmp / "nometa.dcm", ds, implicit_vr=True, little_endian=True, force_encoding=True)
    return ctx.tmp / "nometa.dcm"


def _unknown_syntax(ctx: Ctx) -> Path:
    from pydicom.data import get_testdata_file

    data = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    path = ctx.tmp / "unknown.dcm"
    path.write_bytes(data.replace(b"1.2.840.10008.1.2.1", b"1.2.840.99999.9.9.9", 1))  # same length
    return path


def _results(out: str) -> list[dict]:
    """The JSON list predict prints on stdout (read notes on stderr follow it in ``out``)."""
    return json.JSONDecoder().raw_decode(out[out.index("[") :])[0]


def _same_prediction(ctx: Ctx, out: str) -> None:
    """The big-endian palette file predicts exactly like its little-endian twin (it was read all black)."""
    big, little = _results(out)
    assert big["probabilities"] == little["probabilities"], out


def _good_file_predicted(ctx: Ctx, out: str) -> None:
    rows = {Path(r["path"]).name: r for r in _results(out)}
    assert "prediction" in rows["good.dcm"] and "NumberOfFrames" in rows["badVR.dcm"]["error"], out


def _sr_not_listed(ctx: Ctx, out: str) -> None:
    manifest = (ctx.tmp / "m.csv").read_text()
    assert "report.dcm" not in manifest and "good.dcm" in manifest, manifest


def _sr_beside_images(ctx: Ctx) -> Path:
    data = ctx.data()
    _copy(ctx, "test-SR.dcm", "report.dcm", data / "normal")
    _copy(ctx, "CT_small.dcm", "good.dcm", data / "normal")
    return data


def _series_zero_spacing(ctx: Ctx) -> Path:
    import pydicom

    folder = ctx.tmp / "series"
    write_series(folder, [0.0, 1.0, 2.0, 3.0])
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = [0, 0]
        ds.save_as(f)
    return folder


case("dcm-predict-palette-big-endian", 0, '"prediction"', check=_same_prediction)(
    lambda ctx: predict(ctx, _copy(ctx, "OBXXXX1A_expb.dcm"), _copy(ctx, "OBXXXX1A.dcm"), "--json")
)
case("dcm-predict-palette-big-endian-2frame", 0, '"prediction"', check=_same_prediction)(
    lambda ctx: predict(
        ctx, _copy(ctx, "OBXXXX1A_expb_2frame.dcm"), _copy(ctx, "OBXXXX1A_2frame.dcm"), "--json"
    )
)
case(
    "dcm-predict-malformed-header",
    2,
    "malformed DICOM header: NumberOfFrames (0028,0008) holds '1A', which is not a whole number",
    check=one_line_error,
)(lambda ctx: predict(ctx, _copy(ctx, "badVR.dcm")))
case("dcm-predict-malformed-beside-good", 2, '"prediction"', check=_good_file_predicted)(
    lambda ctx: predict(ctx, _copy(ctx, "badVR.dcm"), _copy(ctx, "CT_small.dcm", "good.dcm"), "--json")
)
case("dcm-predict-no-file-meta", 0, '"prediction"')(lambda ctx: predict(ctx, _no_file_meta(ctx), "--json"))
case("dcm-predict-no-file-meta-palette", 0, '"prediction"')(
    lambda ctx: predict(ctx, _copy(ctx, "OT-PAL-8-face.dcm"), "--json")
)
case(
    "dcm-predict-structured-report",
    2,
    "a DICOM structured report (Comprehensive SR Storage), not an image",
    check=one_line_error,
)(lambda ctx: predict(ctx, _copy(ctx, "test-SR.dcm")))
case("dcm-predict-rt-plan", 2, "(RT Plan Storage), not an image", check=one_line_error)(
    lambda ctx: predict(ctx, _copy(ctx, "rtplan.dcm"))
)
case("dcm-predict-dicomdir", 2, "a DICOM directory (DICOMDIR) that lists other files", check=one_line_error)(
    lambda ctx: predict(ctx, _copy(ctx, "DICOMDIR", "DICOMDIR.dcm"))
)
case("dcm-ingest-sr-beside-images", 0, "1 DICOM file(s) without an image left out", check=_sr_not_listed)(
    lambda ctx: ["ingest", _sr_beside_images(ctx), "-o", ctx.tmp / "m.csv"]
)
case(
    "dcm-audit-sr-in-dataset", 0, "a DICOM structured report (Comprehensive SR Storage)", where="a/audit.json"
)(lambda ctx: ["audit", _sr_beside_images(ctx), "-o", ctx.tmp / "a", "--quiet"])
case("dcm-predict-jpeg-ls", 0, '"prediction"')(
    lambda ctx: predict(ctx, _copy(ctx, "JPEGLSNearLossless_16.dcm"), "--json")
)
case("dcm-predict-jpeg-lossless-and-12bit-extended", 0, '"prediction"')(
    lambda ctx: predict(ctx, _copy(ctx, "JPEG-LL.dcm"), _copy(ctx, "JPGExtended.dcm"), "--json")
)
case(
    "dcm-predict-decoders-fail",
    2,
    "compressed as JPEG Extended (Process 2 and 4); the installed decoders failed on it",
    check=one_line_error,
)(lambda ctx: predict(ctx, _copy(ctx, "JPEG-lossy.dcm")))
case("dcm-predict-unknown-transfer-syntax", 2, "unknown DICOM transfer syntax", check=one_line_error)(
    lambda ctx: predict(ctx, _unknown_syntax(ctx))
)
case(
    "dcm-audit-pydicom-warning-is-a-note",
    0,
    "pydicom: The pixel data is 8320 bytes long, which indicates it contains 128 bytes of excess padding",
    where="a/audit.json",
)(
    lambda ctx: [
        "audit",
        _copy(ctx, "MR_small_padded.dcm", "padded.dcm", ctx.data() / "normal").parents[1],
        "-o",
        ctx.tmp / "a",
        "--quiet",
    ]
)
case("dcm-predict3d-series-zero-spacing", 2, "PixelSpacing is [0, 0], not two positive sizes in mm")(
    lambda ctx: ["predict", ctx.run3d, _series_zero_spacing(ctx), "-o", ctx.tmp / "pred"]
)
