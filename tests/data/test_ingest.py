"""ingest(): class folders, CSVs, npz, single images, errors, and the source registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA
from PIL import Image

from medlens.data import sources
from medlens.data.ingest import ingest, list_sources, register_source
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.io.images import read_image


def _png(path: Path, value: int = 100, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(path)
    return path


def _dicom_file() -> str:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    return str(get_testdata_file("CT_small.dcm"))


# -- class folders ---------------------------------------------------------------------------------------
def test_class_folders_without_split(tmp_path):
    root = tmp_path / "data"
    for cls, n in (("cyst", 3), ("normal", 2)):
        for i in range(n):
            _png(root / cls / f"img{i + 1}.png")
    (root / "cyst" / "img10.jpg").write_bytes(b"")  # zero-byte: listed, decoding reports it later
    (root / "normal" / "notes.txt").write_text("ignore me")
    (root / "normal" / ".DS_Store").write_bytes(b"x")
    _png(root / ".cache" / "hidden" / "x.png")
    _png(root / "__MACOSX" / "cyst" / "y.png")
    m = ingest(root)
    assert list(m.df["case_id"]) == [
        "cyst/img1",
        "cyst/img2",
        "cyst/img3",
        "cyst/img10",
        "normal/img1",
        "normal/img2",
    ]
    assert list(m.df["image"])[:4] == ["cyst/img1.png", "cyst/img2.png", "cyst/img3.png", "cyst/img10.jpg"]
    assert (m.df["patient_id"] == m.df["case_id"]).all() and (m.df["split"] == "").all()
    assert m.classes == ["cyst", "normal"] and m.root == root.resolve()
    assert m.source == f"class folders: {root.resolve()} (2 classes, 6 images)"
    assert Path(m.paths()[0]).is_file()


def test_split_level_is_case_insensitive(tmp_path):
    root = tmp_path / "data"
    for split in ("Training", "VAL", "testing"):
        for cls in ("a", "b"):
            _png(root / split / cls / "x.png")
    m = ingest(root)
    assert sorted(m.df["split"].value_counts().items()) == [("test", 2), ("train", 2), ("val", 2)]
    row = m.df[m.df["case_id"] == "VAL/b/x"].iloc[0]
    assert (row["split"], row["label"], row["image"]) == ("val", "b", "VAL/b/x.png")
    assert "splits train, val, test" in m.source


def test_mixed_split_and_class_folders_is_an_error(tmp_path):
    _png(tmp_path / "train" / "a" / "x.png")
    _png(tmp_path / "extra" / "y.png")
    with pytest.raises(MedlensError, match=r"mixes split folders \(train\) with other folders \(extra\)"):
        ingest(tmp_path)


def test_loose_images_beside_class_folders_are_left_out(tmp_path):
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "b" / "y.png")
    _png(tmp_path / "stray.png")
    m = ingest(tmp_path)
    assert list(m.df["image"]) == ["a/x.png", "b/y.png"]
    assert "1 images outside class folders left out" in m.source


def test_suffixless_dicom_in_class_folder(tmp_path):
    (tmp_path / "ct").mkdir()
    shutil.copy(_dicom_file(), tmp_path / "ct" / "IM0001")
    _png(tmp_path / "xr" / "a.png")
    (tmp_path / "ct" / "README").write_text("series notes")
    m = ingest(tmp_path)
    assert list(m.df["image"]) == ["ct/IM0001", "xr/a.png"]
    assert read_image(m.paths()[0]).shape == (128, 128)


def test_dicom_files_without_an_image_are_left_out(tmp_path):
    from pydicom.data import get_testdata_file

    (tmp_path / "ct").mkdir()
    shutil.copy(_dicom_file(), tmp_path / "ct" / "a.dcm")
    shutil.copy(get_testdata_file("test-SR.dcm"), tmp_path / "ct" / "report.dcm")
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path / "ct" / "RTPLAN1")  # no suffix, DICOM preamble
    shutil.copy(get_testdata_file("waveform_ecg.dcm"), tmp_path / "ct" / "ecg.dcm")
    _png(tmp_path / "xr" / "a.png")
    m = ingest(tmp_path)
    assert list(m.df["image"]) == ["ct/a.dcm", "xr/a.png"]
    assert "3 DICOM file(s) without an image left out" in m.source
    assert "(first: ct/ecg.dcm, a DICOM waveform (12-lead ECG Waveform Storage), not an image" in m.source
    with pytest.raises(MedlensError, match="holds no image: a DICOM structured report"):
        ingest(tmp_path / "ct" / "report.dcm", require_labels=False)


def test_flat_folder_needs_labels_unless_predicting(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    with pytest.raises(MedlensError) as err:
        ingest(tmp_path)
    assert str(err.value) == (
        f"no class folders found in {tmp_path}; expected {tmp_path}/<class>/<image> "
        "or a CSV with image,label columns"
    )
    m = ingest(tmp_path, require_labels=False)
    assert not m.has_labels and list(m.df["image"]) == ["a.png", "b.png"]
    assert "no class folders" in m.source


def test_split_folders_without_classes(tmp_path):
    _png(tmp_path / "train" / "a.png")
    _png(tmp_path / "test" / "b.png")
    m = ingest(tmp_path, require_labels=False)
    assert not m.has_labels and list(m.df["split"]) == ["test", "train"]


def test_single_image(tmp_path):
    path = _png(tmp_path / "scan.png")
    with pytest.raises(MedlensError, match="no class folders found"):
        ingest(path)
    m = ingest(path, require_labels=False)
    assert list(m.df["image"]) == ["scan.png"] and m.df["case_id"][0] == "scan"
    assert m.source == f"image file: {path.resolve()}"


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        MedlensError,
        match=r"no images found in .*empty; put one folder per class.*"
        r"\(the folder is empty\)",
    ):
        ingest(tmp_path / "empty")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.md").write_text("x")
    with pytest.raises(MedlensError, match=r"it holds 1 files, none of them images: \.md"):
        ingest(tmp_path / "docs")
    with pytest.raises(MedlensError, match=r"nowhere does not exist; pass a folder of class folders"):
        ingest(tmp_path / "nowhere")
    (tmp_path / "x.weird").write_text("?")
    with pytest.raises(MedlensError, match=r"cannot tell what kind of dataset .*x\.weird is"):
        ingest(tmp_path / "x.weird")


# -- CSV ---------------------------------------------------------------------------------------------------
def _csv_dataset(tmp_path: Path) -> Path:
    _png(tmp_path / "imgs" / "a.png")
    _png(tmp_path / "imgs" / "b.png")
    abs_img = _png(tmp_path / "elsewhere" / "c.png")
    csv = tmp_path / "meta" / "labels.csv"
    csv.parent.mkdir()
    csv.write_text(
        "Image,label,patient_id,age,Site\n../imgs/a.png,tumour,p1,54,A\n"
        f"../imgs/b.png,normal,p1,,B\n{abs_img},normal,p2,61,A\n../imgs/gone.png,tumour,p3,40,B\n"
    )
    return csv


def test_csv_with_metadata_and_a_missing_file(tmp_path):
    csv = _csv_dataset(tmp_path)
    m = ingest(csv)
    assert m.root == csv.parent.resolve() and len(m) == 4  # the missing file's row is kept
    assert list(m.df.columns[:5]) == ["case_id", "patient_id", "split", "image", "label"]
    assert list(m.df["age"]) == ["54", "", "61", "40"] and "Site" in m.df.columns
    assert [Path(p).is_file() for p in m.paths()] == [True, True, True, False]
    assert m.source == f"CSV: {csv} (2 classes, 4 images)"
    # a saved manifest ingests back to the same table
    saved = m.save(tmp_path / "out" / "manifest.csv")
    again = ingest(saved)
    pd.testing.assert_frame_equal(again.df.drop(columns="image"), m.df.drop(columns="image"))
    assert [Path(p).resolve() for p in again.paths()] == [Path(p).resolve() for p in m.paths()]


def test_csv_errors(tmp_path):
    _png(tmp_path / "a.png")
    cases = {
        "nocol.csv": (
            "path,label\na.png,x\n",
            r"no 'image' column \(columns: path, label\); rename column 'path' to 'image'",
        ),
        "nolabel.csv": (
            "image\na.png\n",
            r"no 'label' column \(columns: case_id, patient_id, split, image\); add one",
        ),
        "blank.csv": ("image,label\na.png,x\na.png,\n", r"1 of 2 cases .* have no label \(first: a.png\)"),
        "gone.csv": (
            "image,label\nx/1.png,a\nx/2.png,b\n",
            r"none of the 2 images listed in .*gone.csv "
            r"exists \(first: x/1.png\)",
        ),
        "empty.csv": ("", "is empty; it needs a header row"),
        "header.csv": ("image,label\n", "has a header but no rows"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(MedlensError, match=message):
            ingest(tmp_path / name)
    assert not ingest(tmp_path / "nolabel.csv", require_labels=False).has_labels


def test_csv_integer_labels_with_label_names(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("image,label\na.png,1\na.png,0\n")
    assert list(ingest(tmp_path / "l.csv", label_names=["benign", "malignant"]).df["label"]) == [
        "malignant",
        "benign",
    ]
    with pytest.raises(MedlensError, match="label 1 in .* has no name: label_names gives 1 names"):
        ingest(tmp_path / "l.csv", label_names=["benign"])


# -- npz ---------------------------------------------------------------------------------------------------
def _npz(path: Path, column_labels: bool = True) -> np.ndarray:
    """A MedMNIST-like npz with 6 / 3 / 2 images, labels 0, 1, 0, ...; returns the train images."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in (("train", 6), ("val", 3), ("test", 2)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 2).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1) if column_labels else labels  # (N, 1) or (N,)
    np.savez(path, **arrays)
    return arrays["train_images"]


def test_npz_with_sidecar_names(tmp_path):
    train = _npz(tmp_path / "mine.npz")
    (tmp_path / "mine.npz.labels.json").write_text(json.dumps({"0": "healthy", "1": "sick"}))
    m = ingest(tmp_path / "mine.npz")
    assert len(m) == 11 and m.classes == ["healthy", "sick"]
    assert sorted(m.df["split"].value_counts().items()) == [("test", 2), ("train", 6), ("val", 3)]
    row = m.df.iloc[4]
    assert (row["case_id"], row["image"], row["label"]) == ("train-4", "mine.npz::train_images[4]", "healthy")
    np.testing.assert_array_equal(read_image(m.paths()[4]), train[4])
    assert m.source.startswith(f"npz: {tmp_path / 'mine.npz'} (2 classes, 11 images")
    # the label_names argument wins over the sidecar; a list sidecar works too
    assert ingest(tmp_path / "mine.npz", label_names=["x", "y"]).classes == ["x", "y"]
    (tmp_path / "mine.npz.labels.json").write_text(json.dumps(["no", "yes"]))
    assert ingest(tmp_path / "mine.npz").classes == ["no", "yes"]


def test_npz_builtin_medmnist_names_and_plain_integers(tmp_path):
    _npz(tmp_path / "pneumoniamnist_28.npz", column_labels=False)
    assert ingest(tmp_path / "pneumoniamnist_28.npz").classes == ["normal", "pneumonia"]
    _npz(tmp_path / "breastmnist.npz")
    assert ingest(tmp_path / "breastmnist.npz").classes == ["malignant", "normal, benign"]
    _npz(tmp_path / "other.npz")
    assert ingest(tmp_path / "other.npz").classes == ["0", "1"]


def test_npz_errors(tmp_path):
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "multi.npz", train_images=images, train_labels=np.zeros((4, 14), dtype=np.uint8))
    with pytest.raises(MedlensError, match=r"train_labels has shape \(4, 14\), i.e. several labels"):
        ingest(tmp_path / "multi.npz")
    np.savez(tmp_path / "short.npz", train_images=images, train_labels=np.zeros(3, dtype=np.uint8))
    with pytest.raises(MedlensError, match=r"train_labels has shape \(3,\) but there are 4 images"):
        ingest(tmp_path / "short.npz")
    np.savez(tmp_path / "three.npz", train_images=images, train_labels=np.array([0, 1, 2, 0]))
    with pytest.raises(MedlensError, match=r"label 2 in .*three.npz has no name in label_names \(2 names\)"):
        ingest(tmp_path / "three.npz", label_names=["a", "b"])
    np.savez(tmp_path / "x.npz", pictures=images)
    with pytest.raises(MedlensError, match="has no image arrays: expected train_images.* it has pictures"):
        ingest(tmp_path / "x.npz")
    np.savez(tmp_path / "obj.npz", train_images=np.array([None, 1], dtype=object), train_labels=np.zeros(2))
    with pytest.raises(MedlensError, match="holds Python objects"):
        ingest(tmp_path / "obj.npz")


# -- options and registry ---------------------------------------------------------------------------------
def test_kind_and_options(tmp_path):
    _png(tmp_path / "a" / "x.png")
    _png(tmp_path / "b" / "y.png")
    with pytest.raises(MedlensError, match=r"unknown source kind 'folders'. Did you mean 'folder'"):
        ingest(tmp_path, kind="folders")
    with pytest.raises(MedlensError, match=r"unknown option 'valdate' for a folder source"):
        ingest(tmp_path, valdate=True)
    assert len(ingest(tmp_path, kind="folder")) == 2


def test_registry_order_and_custom_source(tmp_path, monkeypatch):
    names = [s.name for s in list_sources()]
    assert names.index("csv") < names.index("image") < names.index("folder")
    with pytest.raises(ValueError, match="already registered"):
        register_source("csv")(type("Again", (), {"detect": lambda s, p: False, "load": lambda s, p: None}))
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))

    @register_source("marker", priority=1)
    class Marker:
        def detect(self, path):
            return (path / "MARKER").is_file()

        def load(self, path, *, strict: bool = False):
            df = pd.DataFrame({"image": ["x.png"], "label": ["a" if strict else "b"]})
            return Manifest(df, path, source="marker")

    (tmp_path / "MARKER").write_text("")
    assert ingest(tmp_path, strict=True).df["label"][0] == "a"
    with pytest.raises(
        MedlensError, match="option 'fast' does not apply to marker sources; they take: strict"
    ):
        ingest(tmp_path, fast=True)


# -- real data ---------------------------------------------------------------------------------------------
def test_real_brain_tumor_folder():
    root = SHARED_DATA / "brain-tumor-mri"
    if not root.is_dir():
        pytest.skip("../shared/data/brain-tumor-mri is not beside this checkout")
    m = ingest(root)
    assert m.df["label"].value_counts().to_dict() == {
        "notumor": 1591,
        "pituitary": 1457,
        "meningioma": 1339,
        "glioma": 1321,
    }
    assert m.splits == ["train"] and m.df["case_id"].is_unique
    assert m.source == f"class folders: {root.resolve()} (4 classes, 5708 images; splits train)"


def test_real_pneumoniamnist_npz():
    path = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist_trainval.npz"
    if not path.is_file():
        pytest.skip("../shared/data/pneumoniamnist is not beside this checkout")
    m = ingest(path)
    counts = m.df.groupby(["split", "label"]).size().to_dict()
    assert counts == {
        ("train", "normal"): 1214,
        ("train", "pneumonia"): 3494,
        ("val", "normal"): 135,
        ("val", "pneumonia"): 389,
    }
