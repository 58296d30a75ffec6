"""NIfTI volumes (read/write) and DICOM series → volume, on generated files and real Siemens MR."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED_DATA
from dicom_helpers import COLS, ROWS, write_series

from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.dicom_series import list_dicom_series, read_dicom_series
from medlens.io.volumes import read_volume, write_nifti

SHARED = SHARED_DATA
ORIENTATION = SHARED / "dicom-mr-orientation" / "Orientation"
AFFINE = np.array([[0.5, 0, 0, -10.0], [0, 0.75, 0, 20.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])


# -- NIfTI ---------------------------------------------------------------------------------------------
def test_3d_roundtrip_keeps_values_affine_and_spacing(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = write_nifti(data, AFFINE, tmp_path / "sub" / "vol.nii.gz")
    array, affine, spacing = read_volume(path)
    assert array.shape == (1, 4, 5, 6) and array.dtype == np.int16
    np.testing.assert_array_equal(array[0], data)
    np.testing.assert_allclose(affine, AFFINE)
    assert spacing == pytest.approx((0.5, 0.75, 2.0))
    assert [p.name for p in path.parent.iterdir()] == ["vol.nii.gz"]  # no temporary file left


def test_channels_are_first_in_memory_and_last_on_disk(tmp_path):
    data = np.random.default_rng(0).random((3, 4, 5, 6)).astype(np.float32)
    path = write_nifti(data, None, tmp_path / "rgb.nii")
    assert nib.load(str(path)).shape == (4, 5, 6, 3)
    array, affine, _ = read_volume(path)
    np.testing.assert_array_equal(array, data)
    np.testing.assert_allclose(affine, np.eye(4))


def test_nifti_vector_layout_is_read_as_channels(tmp_path):
    data = np.random.default_rng(1).random((4, 5, 6, 1, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "vec.nii.gz"))
    array, _, _ = read_volume(tmp_path / "vec.nii.gz")
    np.testing.assert_array_equal(array, np.moveaxis(data[:, :, :, 0, :], -1, 0))


@pytest.mark.parametrize("shape", [(8, 9), (2, 3, 4, 5, 6, 7)])
def test_wrong_number_of_dimensions_names_file_and_shape(tmp_path, shape):
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(path))
    expected = rf"flat\.nii\.gz: expected a 3D volume .* got shape \({shape[0]}, {shape[1]}"
    with pytest.raises(MedlensError, match=expected):
        read_volume(path)


def test_missing_and_broken_files_are_unreadable(tmp_path):
    with pytest.raises(UnreadableImageError, match="file not found"):
        read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(UnreadableImageError, match="not a readable NIfTI file"):
        read_volume(tmp_path / "broken.nii.gz")


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def explode(img, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        write_nifti(np.zeros((2, 2, 2)), None, tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MedlensError, match=r"must end in \.nii or \.nii\.gz"):
        write_nifti(np.zeros((2, 2, 2)), None, tmp_path / "out.png")


def test_series_is_sorted_by_position_with_ras_affine(tmp_path):
    write_series(tmp_path, [5.0, 7.0, 9.0, 11.0])
    (tmp_path / "README.txt").write_text("not dicom")
    volume, affine, spacing = read_dicom_series(tmp_path)
    assert volume.shape == (1, COLS, ROWS, 4) and volume.dtype == np.float32
    c, r, k = 5, 3, 2  # voxel (x = column, y = row, z = slice)
    assert volume[0, c, r, k] == 2.0 * (k * 1000 + r * 10 + c) - 10.0  # modality rescale applied
    assert spacing == pytest.approx((0.8, 0.5, 2.0))
    # LPS (-10 + 0.8c, 20 + 0.5r, 5 + 2k) becomes RAS by negating x and y.
    world = affine @ [c, r, k, 1]
    np.testing.assert_allclose(world[:3], [10 - 0.8 * c, -20 - 0.5 * r, 5 + 2 * k])
    assert nib.aff2axcodes(affine) == ("L", "P", "S")


def test_missing_slice_names_series_and_gap(tmp_path):
    uid = write_series(tmp_path, [0.0, 2.0, 4.0, 8.0, 10.0])
    with pytest.raises(
        MedlensError,
        match=rf"missing slice in series {uid} .*gap of 4\.00 mm between slice "
        r"positions 4\.00 and 8\.00 \(median spacing 2\.00 mm\)",
    ):
        read_dicom_series(tmp_path)


def test_mixed_orientations_are_refused(tmp_path):
    iops = [[1, 0, 0, 0, 1, 0]] * 3 + [[1, 0, 0, 0, 0, -1]]
    uid = write_series(tmp_path, [0.0, 2.0, 4.0, 6.0], iops=iops)
    with pytest.raises(
        MedlensError,
        match=rf"mixed orientations in series {uid} .*2 different "
        "ImageOrientationPatient values",
    ):
        read_dicom_series(tmp_path)


def test_duplicate_positions_are_refused(tmp_path):
    write_series(tmp_path, [0.0, 2.0, 2.0, 4.0])
    with pytest.raises(MedlensError, match="2 images at the same slice position"):
        read_dicom_series(tmp_path)


def test_several_series_need_a_choice(tmp_path):
    first = write_series(tmp_path / "a", [0.0, 1.0, 2.0])
    write_series(tmp_path / "b", [0.0, 3.0])
    assert sorted(len(s.files) for s in list_dicom_series(tmp_path)) == [2, 3]
    with pytest.raises(MedlensError, match="holds 2 DICOM series: .*pass series_uid to pick one"):
        read_dicom_series(tmp_path)
    assert read_dicom_series(tmp_path, series_uid=first)[0].shape == (1, COLS, ROWS, 3)
    with pytest.raises(MedlensError, match="series 1.2.3 is not in"):
        read_dicom_series(tmp_path, series_uid="1.2.3")


def test_non_image_objects_beside_a_series_are_not_a_series(tmp_path):
    from pydicom.data import get_testdata_file

    write_series(tmp_path / "study", [0.0, 1.0, 2.0])
    for name in ("test-SR.dcm", "rtplan.dcm", "waveform_ecg.dcm"):
        (tmp_path / "study" / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    assert [len(s.files) for s in list_dicom_series(tmp_path)] == [3]
    assert read_dicom_series(tmp_path)[0].shape == (1, COLS, ROWS, 3)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MedlensError, match="no DICOM files found under"):
        read_dicom_series(tmp_path)


# -- real Siemens mosaic MR -----------------------------------------------------------------------------
needs_orientation = pytest.mark.skipif(
    not ORIENTATION.is_dir(), reason="shared dicom-mr-orientation data absent"
)


@needs_orientation
def test_real_mosaic_matches_dcm2niix_in_world_coordinates():
    folder = ORIENTATION / "ax" / "axasc35"
    volume, affine, spacing = read_dicom_series(folder)  # the .nii beside the DICOM files is skipped
    assert volume.shape == (2, 64, 64, 35)  # two EPI time points become the channels
    assert spacing == pytest.approx((3.25, 3.25, 3.6))
    ref, ref_affine, _ = read_volume(folder / "6_ax_asc_35sl.nii")  # dcm2niix's conversion
    ijk = np.indices(volume.shape[1:]).reshape(3, -1)
    world = affine[:3, :3] @ ijk + affine[:3, 3:]
    inv = np.linalg.inv(ref_affine)
    ref_ijk = inv[:3, :3] @ world + inv[:3, 3:]
    assert np.abs(ref_ijk - np.rint(ref_ijk)).max() < 1e-3
    ref_ijk = np.rint(ref_ijk).astype(int)
    np.testing.assert_array_equal(volume.reshape(2, -1), ref[:, ref_ijk[0], ref_ijk[1], ref_ijk[2]])


@needs_orientation
@pytest.mark.parametrize(
    "series, codes", [("cor/corint35", ("L", "I", "P")), ("sag/sagdesc36", ("P", "I", "L"))]
)
def test_real_coronal_and_sagittal_mosaics(series, codes):
    volume, affine, _ = read_dicom_series(ORIENTATION / series)
    assert volume.shape[:3] == (2, 64, 64) and volume.shape[3] in (35, 36)
    assert nib.aff2axcodes(affine) == codes


@needs_orientation
@pytest.mark.parametrize("series", ["axmb/AxAsc36mb2a", "axmb/AxInt36mb"])  # JPEG Lossless, JPEG 2000
def test_real_compressed_mosaics_decode_with_the_bundled_decoders(series):
    volume, _, spacing = read_dicom_series(ORIENTATION / series)
    assert volume.shape == (2, 86, 86, 36) and volume.max() > 1000
    assert spacing[2] == pytest.approx(3.6)


@needs_orientation
@pytest.mark.skipif(importlib.util.find_spec("pylibjpeg") is not None, reason="JPEG decoders installed")
def test_real_lossless_jpeg_without_decoder_says_what_to_install():
    with pytest.raises(
        MedlensError,
        match=r"cannot decode the pixel data of .*jpg1\.dcm .*JPEG Lossless.*"
        "pip install pylibjpeg",
    ):
        read_dicom_series(ORIENTATION / "axmb" / "AxAsc36mb2a")
