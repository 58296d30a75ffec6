"""Every DICOM test file pydicom ships (its own and pydicom-data's) and the Siemens MR files in
../shared/data, through medlens's reader: each file reads exactly as pydicom reads it after the documented
transforms, or is refused with one clear line.

The documented transforms (docs/robustness.md, "Policy decisions"): frame 1 of a multi-frame file;
grayscale through the modality LUT, then the first VOI window or LUT, as float32, MONOCHROME1 inverted;
colour as pydicom decodes it (YBR converted to RGB); PALETTE COLOR through its LUTs as uint8. A file without
its file meta group is read in the encoding it is written in. pydicom 3.0 misreads the (unsegmented)
palette LUTs of big-endian files, so those are compared with their little-endian twin (the same image).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from medlens.errors import UnreadableImageError
from medlens.io.images import decode_image

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_files  # noqa: E402

MR_FOLDER = SHARED_DATA / "dicom-mr-orientation"
#: Files pydicom decodes that medlens refuses on purpose, with the reason it must give.
REFUSED_ON_PURPOSE: dict[str, str] = {}


def _corpus() -> list:
    files = sorted(str(p) for p in get_testdata_files() if Path(p).is_file())  # it lists folders too
    params = [pytest.param(f, id=_short(f)) for f in files]
    mr = sorted(str(p) for p in MR_FOLDER.rglob("*") if p.is_file()) if MR_FOLDER.is_dir() else []
    params += [pytest.param(f, id=f"shared/{Path(f).relative_to(MR_FOLDER)}") for f in mr]
    if not mr:
        params.append(
            pytest.param(
                None,
                id="shared-mr",
                marks=pytest.mark.skip(reason="../shared/data/dicom-mr-orientation is not there"),
            )
        )
    return params


def _short(path: str) -> str:
    return re.split(r"[/\\](?:data|test_files)[/\\]", path, maxsplit=1)[-1]


def _reference(path: str):
    """pydicom's pixels after the documented transforms, or None when pydicom cannot decode the file."""
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                ds = pydicom.dcmread(path)
            except InvalidDicomError:
                ds = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in ds.file_meta:  # no file meta: the encoding it was read in
                implicit, little = ds.original_encoding
                explicit = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else explicit
            if int(ds.get("NumberOfFrames", 1) or 1) > 1:
                ds.pixel_array_options(index=0)  # frame 1 only (all 120 of a colour clip take seconds)
            arr = ds.pixel_array
            photometric = str(ds.PhotometricInterpretation).upper()
            if photometric == "PALETTE COLOR":
                big_endian = not ds.file_meta.TransferSyntaxUID.is_little_endian
                if big_endian and "RedPaletteColorLookupTableData" in ds:  # pydicom 3.0 swaps these bytes
                    twin = path.replace("_expb", "")
                    assert twin != path and os.path.isfile(twin), f"no little-endian twin of {path}"
                    return _reference(twin)
                rgb = np.asarray(apply_color_lut(arr, ds))[..., :3].astype(np.int64)
                return (rgb >> 8 if rgb.max() > 255 else rgb).astype(np.uint8)
            if int(ds.get("SamplesPerPixel", 1)) > 1:
                return arr
            out = apply_modality_lut(arr, ds)
            if "WindowCenter" in ds or "VOILUTSequence" in ds:
                out = apply_voi_lut(out, ds, index=0)
            out = np.asarray(out, dtype=np.float32)
            return out.max() + out.min() - out if photometric == "MONOCHROME1" else out
        except Exception:  # anything pydicom cannot decode is a file medlens may refuse
            return None


def _is_valid_non_image(path: str) -> bool:
    """A DICOM object pydicom parses, naming its SOP class, without any pixel data (SR, RT plan, DICOMDIR)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:  # not DICOM at all
            return False
    meta = getattr(ds, "file_meta", {})
    named = "SOPClassUID" in ds or "MediaStorageSOPClassUID" in meta or "DirectoryRecordSequence" in ds
    return named and len(ds) > 0 and "PixelData" not in ds


@pytest.mark.slow
@pytest.mark.parametrize("path", _corpus())
def test_real_dicom_reads_like_pydicom_or_is_refused_in_one_line(path):
    expected = _reference(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may reach the terminal beside medlens's own line
        try:
            decoded = decode_image(path)
        except UnreadableImageError as err:
            text = str(err)
            assert "\n" not in text and "Traceback" not in text and "internal error" not in text, text
            assert "force=True" not in text, text
            if _is_valid_non_image(path):
                assert "corrupted?" not in err.reason and err.kind == "non-image", err.reason
            if expected is not None:
                wanted = REFUSED_ON_PURPOSE.get(Path(path).name)
                assert wanted and wanted in err.reason, f"pydicom decodes {path}; medlens: {err.reason}"
            return
    assert expected is not None, f"medlens reads {path}, which pydicom cannot decode"
    actual = decoded.array
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    # no silent misread: an image with content never comes back flat (the all-black palette image did)
    assert np.ptp(actual) > 0 or np.ptp(expected) == 0
    if np.issubdtype(expected.dtype, np.floating):
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(actual, expected)
