"""medlens audit on segmentation sources: NIfTI volumes (spacing census, voxel-exact duplicates, broken files)
and masks of volumes and of 2D image/mask pairs (shape, values, foreground)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from image_helpers import save, texture
from scipy.ndimage import gaussian_filter

from medlens.auditing.fix import apply_fix
from medlens.auditing.run import audit, print_summary
from medlens.io.volumes import write_nifti

SHAPE = (20, 20, 8)


def blob(seed: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random float volume (distinct seeds: unrelated central slices) and an ellipsoid mask in it."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), sigma=(2, 2, 1))
    image = (100 + 400 * field / field.std()).astype(np.float32)
    centre = rng.uniform(0.35, 0.65, 3) * np.array(shape)
    radii = np.array([5.0, 5.0, 2.0])[:, None, None, None]
    inside = (((np.indices(shape) - centre[:, None, None, None]) / radii) ** 2).sum(0) <= 1
    return image, inside.astype(np.uint8)


def spacing_affine(z: float) -> np.ndarray:
    return np.diag([1.0, 1.0, z, 1.0])


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """A pairs CSV of NIfTI volumes with splits and one of each planted problem; audited once."""
    root = tmp_path_factory.mktemp("vols")
    rows, masks = [], {}

    def add(case, split, image, mask, z=2.0):
        write_nifti(image, spacing_affine(z), root / "img" / f"{case}.nii.gz")
        write_nifti(mask, spacing_affine(z), root / "lbl" / f"{case}.nii.gz")
        rows.append(
            {"case_id": case, "split": split, "image": f"img/{case}.nii.gz", "mask": f"lbl/{case}.nii.gz"}
        )
        masks[case] = mask

    for i in range(6):
        add(f"vol{i}", "train" if i < 4 else "test", *blob(i))
    # the same file under another name in the other split: an exact cross-split duplicate
    shutil.copy(root / "img/vol0.nii.gz", root / "img/dup0.nii.gz")
    shutil.copy(root / "lbl/vol0.nii.gz", root / "lbl/dup0.nii.gz")
    rows.append({"case_id": "dup0", "split": "test", "image": "img/dup0.nii.gz", "mask": "lbl/dup0.nii.gz"})
    masks["dup0"] = masks["vol0"]
    # vol1 with its last slice changed: same central slice (a near duplicate), different voxels (not exact)
    edited, mask1 = blob(1)
    edited[:, :, -1] += 50
    add("edit1", "train", edited, mask1)
    add("thick", "train", *blob(20), z=5.0)  # 5 mm slices among 2 mm ones
    image, _ = blob(21)
    add("badmask", "train", image, np.ones((20, 20, 6), np.uint8))  # mask has 6 slices, image 8
    image, _ = blob(22)
    add("empty", "train", image, np.zeros(SHAPE, np.uint8))
    add("corrupt", "train", *blob(23))
    data = (root / "img/corrupt.nii.gz").read_bytes()
    (root / "img/corrupt.nii.gz").write_bytes(data[: len(data) // 2])  # truncated gzip
    pd.DataFrame(rows).to_csv(root / "pairs.csv", index=False)
    result = audit(root / "pairs.csv", root / "out", progress=False, workers=2)
    return root, result, masks


def test_volumes_are_scanned_with_depth_and_spacing(volumes):
    _, result, _ = volumes
    s = result.to_dict()
    assert s["n_images"] == 12 and s["n_readable"] == 11
    assert s["census"]["modes"] == {"volume": 11} and s["census"]["sizes"] == {"20x20": 11}
    row = result.table.set_index("case_id").loc["thick"]
    assert (row["width"], row["height"], row["depth"], row["channels"]) == (20, 20, 8, 1)
    assert (row["spacing_x"], row["spacing_y"], row["spacing_z"]) == (1.0, 1.0, 5.0)
    assert len(result.thumbs) == 11 and all(t[:2] == b"\xff\xd8" for t in result.thumbs.values())  # JPEGs


def test_broken_volume_is_unreadable_and_skipped(volumes):
    _, result, _ = volumes
    s = result.to_dict()
    assert [u["path"].split("/")[-1] for u in s["unreadable"]] == ["corrupt.nii.gz"]
    assert "not a readable NIfTI file" in s["unreadable"][0]["reason"]
    assert s["masks"]["n_skipped"] == 1  # its mask is not checked against an image that cannot be read


def test_duplicate_volume_across_splits_is_an_exact_cross_split_group(volumes):
    _, result, _ = volumes
    groups = {frozenset(m["case_id"] for m in g["members"]): g for g in result.groups}
    assert set(groups) == {frozenset({"vol0", "dup0"}), frozenset({"vol1", "edit1"})}
    exact = groups[frozenset({"vol0", "dup0"})]
    assert exact["kind"] == "exact" and exact["cross_split"] and exact["splits"] == ["test", "train"]
    # the exact hash covers every voxel: one changed slice away from the centre makes it a near duplicate
    near = groups[frozenset({"vol1", "edit1"})]
    assert near["kind"] == "near" and near["max_distance"] == 0 and not near["cross_split"]
    assert result.to_dict()["duplicates"]["n_cross_split"] == 1


def test_spacing_census_and_outliers(volumes):
    _, result, _ = volumes
    v = result.to_dict()["volumes"]
    assert v["n_volumes"] == 11 and v["spacings"] == {"1x1x2": 10, "1x1x5": 1} and v["n_spacings"] == 2
    assert v["shapes"] == {"20x20x8": 11}
    assert v["spacing_z"] == {"min": 2.0, "median": 2.0, "max": 5.0}
    assert [(o["case_id"], o["dimensions"], o["spacing"]) for o in v["spacing_outliers"]] == [
        ("thick", ["spacing_z"], [1.0, 1.0, 5.0])
    ]


def test_masks_are_checked_against_their_volumes(volumes):
    _, result, masks = volumes
    m = result.to_dict()["masks"]
    assert m["n_checked"] == 11 and m["n_problems"] == 1 and m["n_empty"] == 1 and m["num_classes"] == 2
    problem = m["problems"][0]
    assert problem["case_id"] == "badmask" and problem["mask"].endswith("lbl/badmask.nii.gz")
    assert "mask shape (20, 20, 6) does not match image shape (20, 20, 8)" in problem["reason"]
    good = [
        masks[c].mean() for c in ("vol0", "vol1", "vol2", "vol3", "vol4", "vol5", "dup0", "edit1", "thick")
    ]
    assert m["foreground_fraction"] == pytest.approx(
        {"n": 9, "min": min(good), "median": float(np.median(good)), "max": max(good)}
    )
    fg = result.table.set_index("case_id")["fg_fraction"]
    assert fg["vol2"] == pytest.approx(masks["vol2"].mean()) and fg["empty"] == 0.0


def test_volume_findings_report_and_summary(volumes):
    _, result, _ = volumes
    f = result.to_dict()["findings"]
    assert (
        f["unreadable"],
        f["size_outliers"],
        f["duplicate_groups"],
        f["spacing_outliers"],
        f["mask_problems"],
    ) == (1, 0, 2, 1, 1)
    assert f["total"] == 5 == result.findings_count and list(f)[-1] == "total"
    saved = json.loads((result.out_dir / "audit.json").read_text())
    assert saved["volumes"]["spacings"] == {"1x1x2": 10, "1x1x5": 1} and saved["masks"]["n_problems"] == 1
    html = (result.out_dir / "audit.html").read_text()
    assert "Volumes: spacing and depth" in html and "1x1x5: 1" in html and "<code>thick</code>" in html
    assert "<h2>Masks</h2>" in html and "mask shape (20, 20, 6) does not match" in html
    from rich.console import Console

    console = Console(record=True, width=120)
    print_summary(result, console)
    text = console.export_text()
    assert "volumes: 11, spacings 1x1x2 mm: 10, 1x1x5 mm: 1; 1 spacing/depth outliers" in text
    assert "masks: 11 checked, 1 problems, 1 empty" in text


def test_fix_drops_the_broken_volume_and_the_leaked_copy(volumes):
    _root, result, _ = volumes
    clean, changes = apply_fix(result.manifest, result)
    assert {(c["action"], c["path"].split("/")[-1]) for c in changes} == {
        ("drop", "corrupt.nii.gz"),
        ("drop", "dup0.nii.gz"),
    }
    assert len(clean) == 10


def test_nifti_folders_report_no_stray_label_files(tmp_path):
    for i in range(3):
        image, mask = blob(40 + i)
        write_nifti(image, None, tmp_path / "imagesTr" / f"c{i}.nii.gz")
        write_nifti(mask, None, tmp_path / "labelsTr" / f"c{i}.nii.gz")
    write_nifti(blob(50)[0], None, tmp_path / "imagesTs" / "t0.nii.gz")  # unlabelled test volumes
    (tmp_path / "labelsTr" / "notes.doc").write_text("a stray file")
    s = audit(tmp_path, progress=False, workers=1).to_dict()
    assert s["n_images"] == 3 and s["volumes"]["spacings"] == {"1x1x1": 3}
    assert [u["path"].split("/")[-1] for u in s["unreadable"]] == ["notes.doc"]
    assert s["masks"]["n_checked"] == 3 and s["masks"]["problems"] == []


def test_2d_pair_masks_wrong_values_size_or_unreadable_are_problems(tmp_path):
    rows = []
    for i, kind in enumerate(["ok", "ok", "ok", "empty", "seven", "small", "zero-byte"]):
        case = f"s{i}_{kind}"
        mask = np.zeros((24, 24) if kind == "small" else (32, 32), np.uint8)
        if kind != "empty":
            mask[4 : 4 + 2 * (i + 2), 4:12] = 7 if kind == "seven" else 255
        rows.append(
            {
                "case_id": case,
                "split": "train",
                "image": save(tmp_path, f"img/{case}.png", texture(i, (32, 32))),
                "mask": save(tmp_path, f"msk/{case}.png", mask),
            }
        )
    (tmp_path / "msk/s6_zero-byte.png").write_bytes(b"")
    pd.DataFrame(rows).to_csv(tmp_path / "pairs.csv", index=False)
    result = audit(tmp_path / "pairs.csv", tmp_path / "out", progress=False, workers=2)
    s = result.to_dict()
    assert "volumes" not in s and s["census"]["modes"] == {"L": 7}
    m = s["masks"]
    reasons = {p["case_id"]: p["reason"] for p in m["problems"]}
    assert set(reasons) == {"s4_seven", "s5_small", "s6_zero-byte"}
    assert "mask values [0, 7] are not binary" in reasons["s4_seven"]
    assert "mask shape (24, 24) does not match image shape (32, 32)" in reasons["s5_small"]
    assert reasons["s6_zero-byte"] == "mask unreadable: zero-byte file"
    assert m["n_checked"] == 7 and m["n_empty"] == 1 and m["n_skipped"] == 0
    fractions = [2 * (i + 2) * 8 / 1024 for i in range(3)]
    assert m["foreground_fraction"] == pytest.approx(
        {"n": 3, "min": fractions[0], "median": fractions[1], "max": fractions[2]}
    )
    assert s["findings"]["mask_problems"] == 3 and result.findings_count == 3
    assert "s4_seven" in (result.out_dir / "audit.html").read_text()


def test_2d_classification_audit_is_unchanged(tmp_path):
    for i in range(6):
        save(tmp_path / "src", f"{'ab'[i % 2]}/{i}.png", texture(3000 + i))
    result = audit(tmp_path / "src", tmp_path / "out", progress=False, workers=1)  # never inside the source
    s = result.to_dict()
    assert "volumes" not in s and "masks" not in s
    assert list(s["findings"]) == [
        "unreadable",
        "size_outliers",
        "duplicate_groups",
        "cross_split_groups",
        "label_conflict_groups",
        "cross_patient_groups",
        "total",
    ]
    assert not {"depth", "spacing_z", "mask_checked", "fg_fraction"} & set(result.table.columns)
    html = (tmp_path / "out" / "audit.html").read_text()
    assert "Volumes: spacing and depth" not in html and "<h2>Masks</h2>" not in html


def test_cli_msd_label_maps_use_the_dataset_labels(tmp_path, monkeypatch, capsys):
    training = []
    for i, top in enumerate([1, 2, 3]):
        image, mask = blob(60 + i)
        write_nifti(image, None, tmp_path / "imagesTr" / f"m{i}.nii.gz")
        write_nifti(mask * top, None, tmp_path / "labelsTr" / f"m{i}.nii.gz")
        training.append({"image": f"./imagesTr/m{i}.nii.gz", "label": f"./labelsTr/m{i}.nii.gz"})
    labels = {"0": "background", "1": "edema", "2": "tumour"}
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "t", "labels": labels, "training": training}))
    code, out, err = run_cli(
        monkeypatch, capsys, "audit", tmp_path / "dataset.json", "-o", tmp_path / "a", "--quiet", "--strict"
    )
    masks = json.loads((tmp_path / "a" / "audit.json").read_text())["masks"]
    assert code == 1 and masks["num_classes"] == 3  # labels 0..2 allowed: only the mask holding 3 is wrong
    assert [p["case_id"] for p in masks["problems"]] == ["m2"] and "outside the labels 0..2" in out
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "audit",
        tmp_path / "dataset.json",
        "-o",
        tmp_path / "b",
        "--quiet",
        "--mask-classes",
        "2",
    )
    masks = json.loads((tmp_path / "b" / "audit.json").read_text())["masks"]
    assert code == 0 and [p["case_id"] for p in masks["problems"]] == ["m1", "m2"]
    code, out, err = run_cli(monkeypatch, capsys, "audit", tmp_path, "--mask-classes", "1", "--quiet")
    assert code == 2 and "mask_classes must be a whole number from 2 (binary masks) to 255, got 1" in err


def test_audit_help_mentions_segmentation_sources(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "audit", "--help")
    assert code == 0 and "image/mask pairs" in out and "NIfTI volumes" in out and "--mask-classes" in out


def test_neighbouring_slices_of_one_patient_are_not_findings_but_copies_across_patients_are(tmp_path):
    """Slice stacks are made of look-alikes: a near group inside one patient is tagged, not counted."""
    rows = []
    for p, patient in enumerate(("P0", "P1", "P2")):
        for n in range(3):
            rel = save(tmp_path, f"{patient}/{patient}_{n}.png", texture(10 * p + n))
            rows.append(
                {
                    "image": rel,
                    "mask": save(tmp_path, f"{patient}/{patient}_{n}_mask.png", np.zeros((64, 64), np.uint8)),
                    "patient_id": patient,
                    "split": "val" if patient == "P2" else "train",
                }
            )
    neighbour = texture(0).astype(np.int16)
    neighbour[10:14, 10:14] += 6  # P0's slice 1 becomes a near copy of its slice 0
    save(tmp_path, "P0/P0_1.png", np.clip(neighbour, 0, 255).astype(np.uint8))
    save(tmp_path, "P1/P1_2.png", texture(20))  # P1's last slice: P2's first slice again (other patient)
    csv = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    s = audit(csv, progress=False).summary
    by_patients = {
        tuple(sorted({m["patient_id"] for m in g["members"]})): g for g in s["duplicates"]["groups"]
    }
    assert set(by_patients) == {("P0",), ("P1", "P2")}
    assert by_patients[("P0",)]["flags"] == ["same-patient"] and by_patients[("P0",)]["kind"] == "near"
    assert {"cross-split", "cross-patient"} <= set(by_patients[("P1", "P2")]["flags"])
    assert s["duplicates"]["n_same_patient"] == 1
    assert s["findings"]["duplicate_groups"] == 1 and s["findings"]["total"] == 1


def _near_copy(seed: int) -> np.ndarray:
    image = texture(seed).astype(np.int16)
    image[10:14, 10:14] += 6
    return np.clip(image, 0, 255).astype(np.uint8)


def test_fix_of_patient_grouped_data_moves_whole_patients_on_patient_level_evidence(tmp_path):
    """Slices of one patient stay in one split: a straddling patient moves wholly, a patient whose three
    slices copy another patient's moves wholly, one look-alike slice pair between two patients moves
    nothing."""
    layout = {
        "P0": "train",
        "P1": "val",
        "P2": "train",
        "P3": "val",
        "P4": "val",
        "P5": ["train", "train", "val"],
    }
    rows = []
    for p, (patient, splits) in enumerate(layout.items()):
        for n in range(3):
            if patient == "P3":
                image = _near_copy(100 * 2 + n)  # P3 = P2 under another id: all three slices
            elif patient == "P1" and n == 0:
                image = _near_copy(100 * 0)  # one look-alike of P0's first slice
            else:
                image = texture(100 * p + n)
            rows.append(
                {
                    "image": save(tmp_path, f"{patient}_{n}.png", image),
                    "label": "a",
                    "patient_id": patient,
                    "split": splits if isinstance(splits, str) else splits[n],
                }
            )
    csv = tmp_path / "slices.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    result = audit(csv, progress=False)
    assert result.summary["findings"]["patients_in_several_splits"] == 1
    assert result.summary["patients"]["in_several_splits"] == [
        {"patient_id": "P5", "splits": {"train": 2, "val": 1}}
    ]
    clean, changes = apply_fix(result.manifest, result)
    assert all(c["action"] == "move" and c["to_split"] == "train" for c in changes)
    final = clean.df.groupby("patient_id")["split"].agg(lambda s: "+".join(sorted(set(s))))
    assert final.to_dict() == {
        "P0": "train",
        "P1": "val",
        "P2": "train",
        "P3": "train",
        "P4": "val",
        "P5": "train",
    }
    assert len(changes) == 4 and len(clean) == 18  # P5's val slice + P3's three slices; nothing dropped
    again = audit(clean, progress=False).summary
    assert again["findings"]["patients_in_several_splits"] == 0 and again["duplicates"]["n_cross_split"] == 1
