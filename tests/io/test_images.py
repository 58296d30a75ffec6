"""Image and DICOM readers: generated rasters, broken files, real DICOM from pydicom-data and ../shared."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from medlens.errors import UnreadableImageError
from medlens.io.images import is_image_file, read_image

RNG = np.random.default_rng(0)


def _testdata(name: str) -> str:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pip install pydicom-data)")
    return str(path)


# -- rasters -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, shape", [("L", (20, 30)), ("RGB", (20, 30, 3)), ("RGBA", (20, 30, 4))])
def test_png_modes_keep_pixels(tmp_path, mode, shape):
    arr = RNG.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.dtype == np.uint8 and out.shape == shape
    np.testing.assert_array_equal(out, arr)


def test_16bit_png_keeps_full_range(tmp_path):
    arr = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x16.png")
    assert Image.open(tmp_path / "x16.png").mode == "I;16"
    out = read_image(tmp_path / "x16.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, arr)


def test_palette_png_becomes_rgb_and_sizes_are_kept(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (12, 7, 3), dtype=np.uint8)).convert("P").save(tmp_path / "p.png")
    Image.fromarray(RNG.integers(0, 256, (40, 9), dtype=np.uint8)).save(tmp_path / "big.jpg")
    assert read_image(tmp_path / "p.png").shape == (12, 7, 3)
    assert read_image(tmp_path / "big.jpg").shape == (40, 9)


def test_16bit_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    arr = RNG.integers(0, 4096, (16, 10), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "x.tif", arr)
    np.testing.assert_array_equal(read_image(tmp_path / "x.tif"), arr)


def test_truncated_jpeg_says_truncated(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(UnreadableImageError, match="truncated") as err:
        read_image(tmp_path / "cut.jpg")
    assert err.value.path.endswith("cut.jpg")


def test_zero_byte_missing_and_garbage_files(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"this is not a png at all")
    with pytest.raises(UnreadableImageError, match="zero-byte"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(UnreadableImageError, match="file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(UnreadableImageError, match="junk.png"):
        read_image(tmp_path / "junk.png")


def test_npz_reference(tmp_path):
    images = RNG.integers(0, 256, (5, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", train_images=images, train_labels=np.zeros((5, 1)))
    np.testing.assert_array_equal(read_image(f"{tmp_path}/d.npz::train_images[3]"), images[3])
    with pytest.raises(UnreadableImageError, match="no array 'val_images'"):
        read_image(f"{tmp_path}/d.npz::val_images[0]")
    with pytest.raises(UnreadableImageError, match="index beyond 5 images"):
        read_image(f"{tmp_path}/d.npz::train_images[5]")


def test_is_image_file_opens_only_unknown_suffixes(tmp_path):
    (tmp_path / "README").write_text("not an image")
    (tmp_path / "notes.txt").write_text("x")
    shutil.copy(_testdata("CT_small.dcm"), tmp_path / "IM0001")
    assert is_image_file(tmp_path / "scan.JPG")  # by suffix: never opened, need not exist
    assert is_image_file(tmp_path / "IM0001")
    assert not is_image_file(tmp_path / "README")
    assert not is_image_file(tmp_path / "notes.txt")


# -- DICOM ---------------------------------------------------------------------------------------------
def test_ct_rescale_gives_hounsfield_units():
    import pydicom

    path = _testdata("CT_small.dcm")
    ds = pydicom.dcmread(path)
    out = read_image(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert out.dtype == np.float32 and out.shape == (128, 128)
    np.testing.assert_allclose(out, expected)
    assert out.min() < -800  # air around the patient is near -1000 HU


def test_mr_small_reads_as_2d_float():
    out = read_image(_testdata("MR_small.dcm"))
    assert out.shape == (64, 64) and out.dtype == np.float32 and np.ptp(out) > 0


def test_monochrome1_is_inverted():
    import pydicom

    path = _testdata("6154")  # a 16 x 16 MONOCHROME1 CR without file suffix
    raw = pydicom.dcmread(path).pixel_array.astype(float)
    assert pydicom.dcmread(path).PhotometricInterpretation == "MONOCHROME1"
    out = read_image(path)
    assert out.shape == raw.shape
    # brighter stored value = darker displayed pixel: strongly negative correlation with the raw data
    assert np.corrcoef(raw.ravel(), out.ravel())[0, 1] < -0.9


@pytest.mark.parametrize("name", ["SC_rgb.dcm", "SC_ybr_full_uncompressed.dcm"])
def test_colour_dicom_is_rgb(name):
    out = read_image(_testdata(name))
    assert out.shape == (100, 100, 3) and out.dtype == np.uint8
    # the test pattern's top-left block is pure red in both files (YBR must not be converted twice)
    np.testing.assert_allclose(out[0, 0], [255, 0, 0], atol=3)


def test_palette_dicom_is_rgb_uint8():
    out = read_image(_testdata("examples_palette.dcm"))
    assert out.shape == (350, 800, 3) and out.dtype == np.uint8 and out.max() > 200


def test_multiframe_frame_choice_and_bad_frame():
    from medlens.io.dicom import read_dicom_image

    path = _testdata("SC_rgb_2frame.dcm")
    first, second = read_dicom_image(path, frame=0), read_dicom_image(path, frame=1)
    assert first.shape == second.shape == (100, 100, 3) and not np.array_equal(first, second)
    with pytest.raises(UnreadableImageError, match="frame 5 requested but the file has 2 frames"):
        read_dicom_image(path, frame=5)


def test_broken_dicom(tmp_path):
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    with pytest.raises(UnreadableImageError, match="not a readable DICOM image"):
        read_image(tmp_path / "bad.dcm")


# -- real shared data ------------------------------------------------------------------------------------
def test_real_brain_mri_jpegs():
    folder = SHARED_DATA / "brain-tumor-mri" / "Training" / "glioma"
    if not folder.is_dir():
        pytest.skip("../shared/data/brain-tumor-mri is not beside this checkout")
    for path in sorted(folder.glob("*.jpg"))[:2]:
        out = read_image(path)
        assert out.shape[:2] == (224, 224) and out.dtype == np.uint8


def test_real_mosaic_mr_dicom_reads_as_2d():
    folder = SHARED_DATA / "dicom-mr-orientation" / "Orientation" / "ax"
    files = sorted(folder.glob("*/MR.*")) if folder.is_dir() else []
    if not files:
        pytest.skip("../shared/data/dicom-mr-orientation is not beside this checkout")
    assert is_image_file(files[0])
    out = read_image(files[0])
    assert out.ndim == 2 and min(out.shape) > 64 and np.isfinite(out).all()


def test_truncated_tiff_is_unreadable_without_native_noise_on_stderr(tmp_path, capfd, shared_data):
    """libtiff prints its own error for a cut-off LGG slice; the user should see medlens's one line only."""
    slice_dir = shared_data / "lgg-mri-segmentation" / "kaggle_3m" / "TCGA_CS_4941_19960909"
    if not slice_dir.is_dir():
        pytest.skip("the LGG slices are not in ../shared/data")
    for name, n_bytes in (("TCGA_CS_4941_19960909_5.tif", 300), ("TCGA_CS_4941_19960909_3_mask.tif", 100)):
        path = tmp_path / name
        path.write_bytes((slice_dir / name).read_bytes()[:n_bytes])
        with pytest.raises(UnreadableImageError, match="truncated|decompress|corrupt|IFD"):
            read_image(path)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
