"""The DICOM reader on real files from pydicom-data: palette colour, malformed headers, missing file meta,
compressed syntaxes, non-image objects, pydicom's warnings, unknown transfer syntaxes and series spacing."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from dicom_helpers import write_series

from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.dicom import decode_dicom_image, non_image_dicom, read_dataset, read_dicom_image
from medlens.io.dicom_pixels import to_8bit
from medlens.io.images import decode_image

pydicom = pytest.importorskip("pydicom")


def _testdata(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pip install pydicom-data)")
    return str(path)


def _quiet(path, frame: int = 0):
    """decode_dicom_image with every warning an error: nothing may reach the terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return decode_dicom_image(path, frame)


# -- palette colour --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "big, little",
    [("OBXXXX1A_expb.dcm", "OBXXXX1A.dcm"), ("OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_2frame.dcm")],
)
def test_big_endian_palette_reads_like_its_little_endian_twin(big, little):
    for frame in (0, 1) if "2frame" in big else (0,):
        out, _ = _quiet(_testdata(big), frame)
        twin, _ = _quiet(_testdata(little), frame)
        assert out.shape == (600, 800, 3) and out.dtype == np.uint8
        assert np.ptp(out) > 200  # was all black: pydicom 3.0 reads these LUTs little-endian
        np.testing.assert_array_equal(out, twin)


def test_palette_matches_pydicom_where_pydicom_is_right():
    from pydicom.pixels import apply_color_lut

    path = _testdata("OBXXXX1A.dcm")
    ds = pydicom.dcmread(path)
    expected = (np.asarray(apply_color_lut(ds.pixel_array, ds)) >> 8).astype(np.uint8)
    np.testing.assert_array_equal(read_dicom_image(path), expected)


def test_lut_scale_comes_from_bits_and_values():
    np.testing.assert_array_equal(to_8bit(np.array([0, 256, 65280]), 16, "lut", "f"), [0, 1, 255])
    # 8-bit entries padded into 16 bits (DICOM allows it) are kept, not shifted to black
    np.testing.assert_array_equal(to_8bit(np.array([0, 7, 255]), 16, "lut", "f"), [0, 7, 255])
    with pytest.raises(UnreadableImageError, match="declares 8-bit entries but holds values up to 4096"):
        to_8bit(np.array([0, 4096]), 8, "red palette LUT", "f")
    with pytest.raises(UnreadableImageError, match="only 8 or 16 are valid"):
        to_8bit(np.array([0, 3]), 12, "red palette LUT", "f")
    with pytest.raises(UnreadableImageError, match="would lose all its contrast"):
        to_8bit(np.array([256, 300]), 16, "red palette LUT", "f")


def test_palette_lut_shorter_than_declared_is_refused(tmp_path):
    ds = pydicom.dcmread(_testdata("OBXXXX1A.dcm"))
    ds.RedPaletteColorLookupTableData = ds.RedPaletteColorLookupTableData[:100]
    ds.save_as(tmp_path / "short.dcm")
    with pytest.raises(UnreadableImageError, match="red palette LUT holds 100 bytes for the 256 entries"):
        read_dicom_image(tmp_path / "short.dcm")


@pytest.mark.parametrize("name", ["SC_rgb_expb_16bit.dcm", "SC_rgb_expb_32bit_2frame.dcm"])
def test_big_endian_colour_comes_back_in_native_byte_order(name):
    out = read_dicom_image(_testdata(name))
    assert out.dtype.isnative and out.shape == (100, 100, 3)  # torch.from_numpy refuses '>u2'
    np.testing.assert_array_equal(out, read_dicom_image(_testdata(name.replace("_expb", ""))))


# -- malformed header values -----------------------------------------------------------------------------
def test_malformed_number_of_frames_is_one_line_naming_file_and_field():
    path = _testdata("badVR.dcm")
    with pytest.raises(UnreadableImageError) as err:
        _quiet(path)
    assert err.value.path == path
    assert "NumberOfFrames (0028,0008) holds '1A', which is not a whole number" in err.value.reason
    with pytest.raises(UnreadableImageError, match="NumberOfFrames"):
        read_dataset(path)


@pytest.mark.parametrize(
    "field, value, words",
    [("RescaleSlope", "abc", "a number"), ("WindowCenter", "x", "a number"), ("Rows", "", None)],
)
def test_other_malformed_values(tmp_path, field, value, words):
    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    ds.add_new(pydicom.datadict.tag_for_keyword(field), "DS" if field != "Rows" else "US", None)
    if field != "Rows":
        ds[field]._value = value  # bypass pydicom's own validation, as a broken writer would
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(UnreadableImageError) as err:
        _quiet(tmp_path / "bad.dcm")
    assert "\n" not in str(err.value)
    if words:
        assert f"{field}" in err.value.reason and words in err.value.reason


def test_element_with_a_wrong_length_is_one_line(tmp_path):
    """Rows (US, 2 bytes) stored with 3 bytes: pydicom raises BytesLengthException at first access."""
    data = Path(_testdata("CT_small.dcm")).read_bytes()
    at = data.index(b"\x28\x00\x10\x00US\x02\x00")
    value = data[at + 8 : at + 10]
    (tmp_path / "rows.dcm").write_bytes(
        data[:at] + b"\x28\x00\x10\x00US\x03\x00" + value + b"\0" + data[at + 10 :]
    )
    with pytest.raises(
        UnreadableImageError, match=r"Rows \(0028,0010\) cannot be decoded \(BytesLengthException\)"
    ):
        _quiet(tmp_path / "rows.dcm")


# -- missing file meta -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, implicit, little",
    [
        ("CT_small.dcm", True, True),
        ("CT_small.dcm", False, True),
        ("emri_small_big_endian.dcm", False, False),
    ],
)
def test_file_without_file_meta_is_read_in_its_encoding(tmp_path, name, implicit, little):
    from pydicom.filewriter import dcmwrite

    src = _testdata(name)
    ds = pydicom.dcmread(src)
    del ds.file_meta
    ds.preamble = None
    path = tmp_path / "nometa.dcm"
    dcmwrite(path, ds, implicit_vr=implicit, little_endian=little, force_encoding=True)
    raw = path.read_bytes()
    assert raw[128:132] != b"DICM" and b"\x02\x00\x10\x00" not in raw[:200]  # no preamble, no (0002,0010)
    out, notes = _quiet(path)
    np.testing.assert_allclose(out, read_dicom_image(src))
    assert any("no DICOM file meta header; read as" in n for n in notes), notes


def test_real_file_without_file_meta_reads():
    out, notes = _quiet(_testdata("OT-PAL-8-face.dcm"))
    assert out.shape == (480, 640, 3) and np.ptp(out) > 100
    assert "no DICOM file meta header; read as Implicit VR Little Endian" in " ".join(notes)


# -- compressed syntaxes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "JPEG-LL.dcm",  # JPEG Lossless
        "JPEGLSNearLossless_16.dcm",  # JPEG-LS
        "emri_small_jpeg_ls_lossless.dcm",
        "JPGExtended.dcm",  # 12-bit JPEG Extended
        "US1_J2KR.dcm",  # J2K YBR_RCT
    ],
)
def test_jpeg_ls_lossless_extended_and_j2k_decode_exactly(name):
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = _testdata(name)
    ds = pydicom.dcmread(path)
    ds.pixel_array_options(index=0)
    expected = ds.pixel_array
    if ds.SamplesPerPixel == 1:
        expected = apply_modality_lut(expected, ds)
        if "WindowCenter" in ds:
            expected = apply_voi_lut(expected, ds, index=0)
    out, _ = _quiet(path)
    assert np.ptp(out) > 0
    np.testing.assert_allclose(out, np.asarray(expected, dtype=out.dtype))


def test_damaged_rle_reads_without_a_native_panic(tmp_path, capfd):
    """pylibjpeg-rle (Rust) panics on this file: a BaseException pydicom does not catch, and a panic message
    printed straight to the terminal. pydicom's own RLE decoder reads it and says what is odd."""
    ds = pydicom.dcmread(_testdata("MR_small_RLE.dcm"))
    ds.Rows = 63  # the RLE segments now hold more data than the header declares
    ds.save_as(tmp_path / "rle.dcm")
    out, notes = _quiet(tmp_path / "rle.dcm")
    assert out.shape == (63, 64)
    assert any("non-conformant padding" in n for n in notes), notes
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_decoder_failure_says_the_truth():
    with pytest.raises(UnreadableImageError) as err:
        _quiet(_testdata("JPEG-lossy.dcm"))
    reason = err.value.reason
    assert "compressed as JPEG Extended (Process 2 and 4); the installed decoders failed on it" in reason
    assert "pylibjpeg:" in reason and "no installed decoder" not in reason and "pip install" not in reason


def _with_syntax(tmp_path: Path, syntax: str, name: str) -> Path:
    """CT_small.dcm with its pixel data encapsulated and the file meta naming ``syntax``."""
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(_testdata("CT_small.dcm"))
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(tmp_path / name)
    return tmp_path / name


def test_syntax_without_any_pydicom_decoder(tmp_path):
    with pytest.raises(UnreadableImageError, match="MPEG2 .*pydicom has no decoder for it"):
        _quiet(_with_syntax(tmp_path, "1.2.840.10008.1.2.4.100", "mpeg.dcm"))


def test_unknown_transfer_syntax_is_one_line(tmp_path):
    src = Path(_testdata("CT_small.dcm")).read_bytes()
    path = tmp_path / "unknown.dcm"
    path.write_bytes(src.replace(b"1.2.840.10008.1.2.1", b"1.2.840.99999.9.9.9", 1))  # same length
    with pytest.raises(UnreadableImageError, match="unknown DICOM transfer syntax '1.2.840.99999.9.9.9'"):
        _quiet(path)


# -- non-image objects -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, words",
    [
        ("test-SR.dcm", "a DICOM structured report (Comprehensive SR Storage), not an image"),
        ("reportsi.dcm", "a DICOM structured report (Basic Text SR Storage), not an image"),
        ("rtplan.dcm", "(RT Plan Storage), not an image"),
        ("waveform_ecg.dcm", "a DICOM waveform (12-lead ECG Waveform Storage), not an image"),
        ("DICOMDIR", "a DICOM directory (DICOMDIR)"),
        ("rtstruct.dcm", "a DICOM RT structure set (RT Structure Set Storage), not an image"),
    ],
)
def test_non_image_objects_say_what_they_are(name, words):
    path = _testdata(name)
    with pytest.raises(UnreadableImageError) as err:
        _quiet(path)
    assert words in err.value.reason and "corrupted" not in err.value.reason
    assert err.value.kind == "non-image"
    assert words in (non_image_dicom(path) or "")  # the header-only check ingest uses agrees


def test_header_only_check_lists_images():
    for name in ("CT_small.dcm", "JPEG-LL.dcm", "OT-PAL-8-face.dcm", "emri_small.dcm"):
        assert non_image_dicom(_testdata(name)) is None, name


# -- warnings --------------------------------------------------------------------------------------------
def test_pydicom_warnings_become_notes_not_terminal_noise(capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = decode_image(_testdata("MR_small_padded.dcm"))
        with pytest.raises(UnreadableImageError):
            decode_image(_testdata("badVR.dcm"))
    assert any(n.startswith("pydicom: The pixel data is 8320 bytes long") for n in decoded.notes)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_warning_capture_restores_state_under_threads():
    before = (warnings.showwarning, list(warnings.filters))
    threads = [
        threading.Thread(target=lambda: [decode_image(_testdata("MR_small_padded.dcm")) for _ in range(5)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (warnings.showwarning, list(warnings.filters)) == before


# -- series ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spacing", [[0, 0], [0.5, 0], [-1, 1]])
def test_series_with_zero_pixel_spacing_is_one_line(tmp_path, spacing):
    from medlens.io.dicom_series import read_dicom_series

    write_series(tmp_path / "s", [0.0, 1.0, 2.0])
    for f in (tmp_path / "s").iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = spacing
        ds.save_as(f)
    with pytest.raises(MedlensError, match=r"PixelSpacing is .*not two positive sizes in mm"):
        read_dicom_series(tmp_path / "s")


def test_series_with_degenerate_orientation_is_one_line(tmp_path):
    from medlens.io.dicom_series import read_dicom_series

    write_series(tmp_path / "s", [0.0, 1.0, 2.0], iops=[[0, 0, 0, 0, 0, 0]] * 3)
    with pytest.raises(MedlensError, match="is not two independent direction cosines"):
        read_dicom_series(tmp_path / "s")
