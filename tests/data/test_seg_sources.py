"""Segmentation sources (kaggle_3m, pairs CSV, NIfTI folders, MSD), check_pair and slices-to-volumes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from conftest import SHARED_DATA
from PIL import Image

from medlens.data.convert import slices_to_volumes
from medlens.data.manifest import Manifest
from medlens.data.seg_sources import (
    SOURCES,
    check_pair,
    detect_kaggle_3m,
    detect_msd,
    detect_nifti_folders,
    detect_pairs_csv,
    load_kaggle_3m,
    load_msd,
    load_nifti_folders,
    load_pairs_csv,
    msd_info,
)
from medlens.errors import MedlensError
from medlens.io import read_image
from medlens.io.volumes import read_volume, write_nifti

KAGGLE = SHARED_DATA / "lgg-mri-segmentation" / "kaggle_3m"
PATIENTS = {"TCGA_AA_0001_20000101": (1, 2, 10), "TCGA_AA_0002_20010101": (3, 1)}
#: Whole patients (slices 1..n, as kaggle_3m numbers them): what slices-to-volumes stacks.
WHOLE = {"TCGA_AA_0001_20000101": (1, 3, 2, 10, 4, 5, 6, 7, 8, 9), "TCGA_AA_0002_20010101": (3, 1, 2)}


def make_kaggle(root: Path, bad_mask: str | None = None, patients: dict | None = None) -> Path:
    """Tiny kaggle_3m tree: slice k of a patient has pixel values 10 * n and a square mask on n >= 2."""
    for patient, numbers in (patients or PATIENTS).items():
        (root / patient).mkdir(parents=True)
        for n in numbers:
            image = np.full((8, 8, 3), 10 * n, np.uint8)
            mask = np.zeros((8, 8), np.uint8)
            if n >= 2:
                mask[2:5, 3:6] = 255
            if f"{patient}_{n}" == bad_mask:
                mask[0, 0] = 7
            tifffile.imwrite(root / patient / f"{patient}_{n}.tif", image)
            tifffile.imwrite(root / patient / f"{patient}_{n}_mask.tif", mask)
    (root / "data.csv").write_text("Patient,age,gender\nTCGA_AA_0001,61,1\nTCGA_AA_0002,40,2\n")
    return root


# -- check_pair ------------------------------------------------------------------------------------------
def test_check_pair_normalises_binary_masks():
    image = np.zeros((4, 5, 3), np.uint8)
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 2] = 255
    out = check_pair(image, mask, "c")
    assert out.dtype == np.uint8 and out.sum() == 2 and out[1, 2] == 1
    np.testing.assert_array_equal(check_pair(image, out, "c"), out)  # {0, 1} stays as it is
    rgb_mask = np.repeat(mask[..., None], 3, axis=-1)
    assert check_pair(image, rgb_mask, "c").shape == (4, 5)
    volume = np.zeros((2, 3, 4, 5))
    labels = np.zeros((1, 3, 4, 5), np.int16)
    labels[0, 1, 1, 1] = 2
    assert check_pair(volume, labels, "v", spatial_dims=3, num_classes=3).max() == 2


def test_check_pair_errors_name_the_case():
    with pytest.raises(
        MedlensError,
        match=r"case p1_4: mask shape \(4, 4\) does not match image shape "
        r"\(4, 5\)",
    ):
        check_pair(np.zeros((4, 5, 3)), np.zeros((4, 4)), "p1_4")
    with pytest.raises(MedlensError, match=r"case p1_5: mask values \[0, 1, 2, 254, 255\] are not binary"):
        check_pair(np.zeros((2, 3)), np.array([[0, 1, 2], [254, 255, 0]]), "p1_5")
    with pytest.raises(MedlensError, match=r"case v1: mask values \[0, 3\] are outside the labels 0\.\.2"):
        check_pair(
            np.zeros((1, 2, 2, 2)), np.array([0, 3] * 4).reshape(2, 2, 2), "v1", spatial_dims=3, num_classes=3
        )
    with pytest.raises(MedlensError, match="case c: the mask has 3 different colour channels"):
        check_pair(np.zeros((2, 2)), np.arange(12).reshape(2, 2, 3), "c")


# -- kaggle_3m -------------------------------------------------------------------------------------------
def test_kaggle_3m_rows_order_and_metadata(tmp_path):
    root = make_kaggle(tmp_path / "kaggle_3m")
    assert detect_kaggle_3m(tmp_path) and detect_kaggle_3m(root) and not detect_kaggle_3m(root / "data.csv")
    manifest = load_kaggle_3m(tmp_path)  # the parent of kaggle_3m/ works too
    df = manifest.df
    assert manifest.root == root and manifest.source.endswith("(2 patients, 5 slices)")
    assert df["case_id"].tolist() == [
        "TCGA_AA_0001_20000101_1",
        "TCGA_AA_0001_20000101_2",
        "TCGA_AA_0001_20000101_10",
        "TCGA_AA_0002_20010101_1",
        "TCGA_AA_0002_20010101_3",
    ]
    assert df["slice_index"].tolist() == [1, 2, 10, 1, 3]
    assert df["patient_id"].tolist() == ["TCGA_AA_0001_20000101"] * 3 + ["TCGA_AA_0002_20010101"] * 2
    assert df["mask"][2] == "TCGA_AA_0001_20000101/TCGA_AA_0001_20000101_10_mask.tif"
    assert df["age"].tolist() == ["61"] * 3 + ["40"] * 2 and "Patient" not in df.columns
    assert read_image(manifest.resolve(df["image"][2]))[0, 0, 0] == 100


def test_kaggle_3m_missing_mask_and_orphan_mask(tmp_path):
    root = make_kaggle(tmp_path / "k")
    (root / "TCGA_AA_0002_20010101" / "TCGA_AA_0002_20010101_3_mask.tif").unlink()
    with pytest.raises(MedlensError, match=r"case TCGA_AA_0002_20010101_3: mask .*_3_mask\.tif is missing"):
        load_kaggle_3m(root)
    (root / "TCGA_AA_0002_20010101" / "TCGA_AA_0002_20010101_3.tif").unlink()
    (root / "TCGA_AA_0001_20000101" / "TCGA_AA_0001_20000101_2.tif").unlink()
    with pytest.raises(MedlensError, match="case TCGA_AA_0001_20000101_2: mask .* has no image beside it"):
        load_kaggle_3m(root)


def test_kaggle_3m_validate_catches_bad_mask_values(tmp_path):
    root = make_kaggle(tmp_path / "k", bad_mask="TCGA_AA_0002_20010101_1")
    assert len(load_kaggle_3m(root)) == 5  # cheap by default: files are not opened
    with pytest.raises(MedlensError, match=r"case TCGA_AA_0002_20010101_1: mask values \[0, 7\]"):
        load_kaggle_3m(root, validate=True)
    with pytest.raises(MedlensError, match="unknown option 'bogus'"):
        load_kaggle_3m(root, bogus=1)


@pytest.mark.skipif(not KAGGLE.is_dir(), reason="shared lgg-mri-segmentation data absent")
def test_real_kaggle_3m_two_patients():
    manifest = load_kaggle_3m(KAGGLE)
    assert manifest.df["patient_id"].nunique() == 90
    for patient in manifest.df["patient_id"].unique()[:2]:
        rows = manifest.df[manifest.df["patient_id"] == patient]
        assert rows["slice_index"].tolist() == list(range(1, len(rows) + 1))
        assert rows["age_at_initial_pathologic"].nunique() == 1 and rows["age_at_initial_pathologic"].iloc[0]
        positive = 0
        for row in rows.itertuples():
            image, raw = read_image(manifest.resolve(row.image)), read_image(manifest.resolve(row.mask))
            assert image.shape == (128, 128, 3) and set(np.unique(raw)) <= {0, 255}
            positive += int(check_pair(image, raw, row.case_id).any())
        assert positive > 0  # every LGG patient has tumour on some slices


# -- pairs CSV -------------------------------------------------------------------------------------------
def test_pairs_csv(tmp_path):
    (tmp_path / "img").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "img" / f"{name}.png")
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "img" / f"{name}_m.png")
    csv = tmp_path / "pairs.csv"
    csv.write_text("Image,Mask,patient_id,site\nimg/a.png,img/a_m.png,P1,x\nimg/b.png,img/b_m.png,P1,y\n")
    assert detect_pairs_csv(csv) and not detect_pairs_csv(tmp_path)
    manifest = load_pairs_csv(csv, validate=True)
    assert manifest.df[["case_id", "patient_id", "mask", "site"]].values.tolist() == [
        ["a", "P1", "img/a_m.png", "x"],
        ["b", "P1", "img/b_m.png", "y"],
    ]
    csv.write_text("image,mask\nimg/a.png,img/missing.png\n")
    with pytest.raises(MedlensError, match="case a: mask file img/missing.png listed in .* does not exist"):
        load_pairs_csv(csv)
    csv.write_text("image,label\nimg/a.png,1\n")
    with pytest.raises(MedlensError, match="has no mask column; a pairs CSV needs image,mask"):
        load_pairs_csv(csv)


def test_manifest_save_keeps_mask_paths_valid(tmp_path):
    manifest = load_kaggle_3m(make_kaggle(tmp_path / "k"))
    saved = manifest.save(tmp_path / "elsewhere" / "deep" / "m.csv")
    loaded = Manifest.load(saved)
    assert all(Path(loaded.resolve(m)).is_file() for m in loaded.df["mask"])


# -- NIfTI folders and MSD -------------------------------------------------------------------------------
def make_nifti_tree(root: Path, cases=("case1", "case2"), image_suffix="") -> None:
    for i, case in enumerate(cases):
        image = np.full((4, 4, 3), i, np.float32)
        write_nifti(image, None, root / "imagesTr" / f"{case}{image_suffix}.nii.gz")
        write_nifti((image > 0).astype(np.uint8), None, root / "labelsTr" / f"{case}.nii.gz")


def test_nifti_folders_match_by_name(tmp_path):
    make_nifti_tree(tmp_path, cases=("case10", "case2"), image_suffix="_0000")
    assert detect_nifti_folders(tmp_path) and not detect_nifti_folders(tmp_path / "imagesTr")
    manifest = load_nifti_folders(tmp_path, validate=True)
    assert manifest.df[["case_id", "image", "mask"]].values.tolist() == [
        ["case2", "imagesTr/case2_0000.nii.gz", "labelsTr/case2.nii.gz"],
        ["case10", "imagesTr/case10_0000.nii.gz", "labelsTr/case10.nii.gz"],
    ]


def test_nifti_folders_errors_name_the_case(tmp_path):
    make_nifti_tree(tmp_path)
    (tmp_path / "labelsTr" / "case2.nii.gz").unlink()
    with pytest.raises(MedlensError, match="case case2: no label file for case2.nii.gz"):
        load_nifti_folders(tmp_path)
    write_nifti(np.zeros((4, 4, 3)), None, tmp_path / "labelsTr" / "case2.nii.gz")
    write_nifti(np.zeros((4, 4, 3)), None, tmp_path / "labelsTr" / "case3.nii.gz")
    with pytest.raises(MedlensError, match="case case3: label case3.nii.gz has no image"):
        load_nifti_folders(tmp_path)
    with pytest.raises(MedlensError, match="has no image/label folders; expected one of imagesTr/labelsTr"):
        load_nifti_folders(tmp_path / "imagesTr")


def test_msd_dataset_json(tmp_path):
    make_nifti_tree(tmp_path)
    spec = {
        "name": "Toy",
        "labels": {"0": "background", "1": "tumour"},
        "modality": {"0": "FLAIR"},
        "training": [
            {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ("case1", "case2")
        ],
        "test": ["./imagesTs/case9.nii.gz"],
    }
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    assert detect_msd(tmp_path) and detect_msd(tmp_path / "dataset.json")
    manifest = load_msd(tmp_path / "dataset.json")
    assert manifest.df[["case_id", "image", "mask"]].values.tolist() == [
        ["case1", "imagesTr/case1.nii.gz", "labelsTr/case1.nii.gz"],
        ["case2", "imagesTr/case2.nii.gz", "labelsTr/case2.nii.gz"],
    ]
    assert msd_info(tmp_path)["labels"] == {"0": "background", "1": "tumour"}
    spec["training"].append({"image": "./imagesTr/case7.nii.gz", "label": "./labelsTr/case7.nii.gz"})
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(MedlensError, match=r"case case7: image file \./imagesTr/case7\.nii\.gz listed in"):
        load_msd(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(MedlensError, match="has no 'training' list"):
        load_msd(tmp_path)
    assert set(SOURCES) == {"kaggle_3m", "pairs_csv", "nifti_folders", "msd"}


# -- slices-to-volumes -------------------------------------------------------------------------------------
def test_slices_to_volumes_stacks_in_slice_order(tmp_path):
    src = make_kaggle(tmp_path / "k", patients=WHOLE)
    manifest = slices_to_volumes(src, tmp_path / "vols", progress=False)
    assert manifest.df["case_id"].tolist() == list(WHOLE)
    assert manifest.df["n_slices"].tolist() == [10, 3] and manifest.df["age"].tolist() == ["61", "40"]
    image_path = tmp_path / "vols" / "imagesTr" / "TCGA_AA_0001_20000101.nii.gz"
    assert nib.load(str(image_path)).shape == (8, 8, 10, 3)  # (H, W, N, C) on disk
    image, affine, spacing = read_volume(image_path)
    assert image.shape == (3, 8, 8, 10) and image[0, 0, 0].tolist() == [10 * n for n in range(1, 11)]
    mask, _, _ = read_volume(tmp_path / "vols" / "labelsTr" / "TCGA_AA_0001_20000101.nii.gz")
    assert mask.shape == (1, 8, 8, 10) and mask[0, 2:5, 3:6].sum(axis=(0, 1)).tolist() == [0] + [9] * 9
    assert json.loads((tmp_path / "vols" / "convert.json").read_text())["skipped"] == []
    assert mask.max() == 1 and spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(affine, np.eye(4))
    reloaded = Manifest.load(tmp_path / "vols" / "manifest.csv")
    assert reloaded.df["mask"].tolist() == manifest.df["mask"].tolist()
    assert len(load_nifti_folders(tmp_path / "vols")) == 2  # the output is itself a NIfTI folder source


def test_slices_to_volumes_skips_a_patient_with_a_missing_slice_and_says_which(tmp_path):
    # patient 1 lacks slices 3-9 of 10, patient 2 (slices 1-3) is whole: a gap is never stacked over
    src = make_kaggle(tmp_path / "k", patients={**PATIENTS, "TCGA_AA_0002_20010101": (3, 1, 2)})
    manifest = slices_to_volumes(src, tmp_path / "vols", progress=False)
    assert manifest.df["case_id"].tolist() == ["TCGA_AA_0002_20010101"]
    assert not (tmp_path / "vols" / "imagesTr" / "TCGA_AA_0001_20000101.nii.gz").exists()
    skipped = json.loads((tmp_path / "vols" / "convert.json").read_text())["skipped"]
    assert len(skipped) == 1 and skipped[0]["kind"] == "missing"
    assert skipped[0]["path"] == str(src / "TCGA_AA_0001_20000101")
    assert skipped[0]["reason"].startswith("slice 3 of 10 missing (and 6 more: 4-9)")
    # every patient with a gap: refused, nothing written
    with pytest.raises(MedlensError, match=r"TCGA_AA_0001_20000101: slice 3 of 10 missing"):
        slices_to_volumes(make_kaggle(tmp_path / "all"), tmp_path / "none", progress=False)
    assert not (tmp_path / "none").exists()


def test_slices_to_volumes_failure_leaves_nothing(tmp_path):
    src = make_kaggle(tmp_path / "k", bad_mask="TCGA_AA_0002_20010101_3", patients=WHOLE)
    with pytest.raises(MedlensError, match=r"case TCGA_AA_0002_20010101_3: mask values \[0, 7, 255\]"):
        slices_to_volumes(src, tmp_path / "out" / "vols", progress=False)
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "taken").mkdir()
    with pytest.raises(MedlensError, match="already exists"):
        slices_to_volumes(make_kaggle(tmp_path / "ok", patients=WHOLE), tmp_path / "taken", progress=False)
