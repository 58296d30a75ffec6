"""Exact and near duplicates are reported in two honest layers: an exact set that is also a near copy of
another image is still one exact group, and a near group links it to that image."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from image_helpers import save, texture
from PIL import Image

from medlens.auditing.fix import apply_fix
from medlens.auditing.run import audit, print_summary
from medlens.data.manifest import Manifest


def _near(arr: np.ndarray) -> np.ndarray:
    out = arr.astype(np.int16)
    out[10:14, 10:14] += 6  # a small local edit: same pHash neighbourhood, different pixels
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """A in three copies (one in test), B a near copy of A, C in two copies, ten distinct images, seven
    zero-byte files."""
    root = tmp_path_factory.mktemp("layers")
    a, c = texture(1), texture(2)
    rows = [
        ("train/x/A.png", a, "train"),
        ("test/x/A_copy.png", a, "test"),
        ("train/x/A_copy2.png", a, "train"),
        ("train/x/B.png", _near(a), "train"),
        ("train/x/C.png", c, "train"),
        ("train/x/C_copy.png", c, "train"),
    ]
    rows += [(f"train/x/d{i}.png", texture(100 + i), "train") for i in range(10)]
    records = [{"image": save(root, rel, arr), "label": "x", "split": split} for rel, arr, split in rows]
    for i in range(7):
        (root / f"train/x/empty{i}.png").write_bytes(b"")
        records.append({"image": f"train/x/empty{i}.png", "label": "x", "split": "train"})
    manifest = Manifest(pd.DataFrame(records), root, source="layers")
    return manifest, audit(manifest, tmp_path_factory.mktemp("out"), progress=False, workers=1)


def _names(group) -> set[str]:
    return {Path(m["path"]).name for m in group["members"]}


def test_exact_set_inside_a_near_link_is_still_an_exact_group(layered):
    _, result = layered
    d = result.summary["duplicates"]
    exact = {frozenset(_names(g)): g for g in result.groups if g["kind"] == "exact"}
    near = [g for g in result.groups if g["kind"] == "near"]
    assert set(exact) == {
        frozenset({"A.png", "A_copy.png", "A_copy2.png"}),
        frozenset({"C.png", "C_copy.png"}),
    }
    assert len(near) == 1 and _names(near[0]) == {"A.png", "A_copy.png", "A_copy2.png", "B.png"}
    group_a = exact[frozenset({"A.png", "A_copy.png", "A_copy2.png"})]
    assert group_a["cross_split"] and group_a["near_group"] == near[0]["id"]
    assert exact[frozenset({"C.png", "C_copy.png"})]["near_group"] is None
    assert near[0]["exact_groups"] == [group_a["id"]] and near[0]["n_exact_sets"] == 2
    units = {Path(u["path"]).name[0]: u for u in near[0]["units"]}
    assert units["A"]["exact_group"] == group_a["id"] and units["A"]["n_copies"] == 3
    assert units["B"]["exact_group"] is None and units["B"]["n_copies"] == 1
    assert {Path(m["path"]).name: m["exact_group"] for m in near[0]["members"]}["B.png"] is None
    # B (train) is a near copy of A_copy (test): different pixels in different splits
    assert near[0]["cross_split"]
    assert d["exact"] == {
        "n_groups": 2,
        "n_images": 5,
        "n_redundant": 3,
        "n_cross_split": 1,
        "n_label_conflict": 0,
        "n_cross_patient": 0,
    }
    assert d["near"] == {
        "n_groups": 1,
        "n_images": 4,
        "n_units": 2,
        "n_exact_groups_linked": 1,
        "n_cross_split": 1,
        "n_label_conflict": 0,
        "n_cross_patient": 0,
        "n_same_patient": 0,
    }
    assert (d["n_groups"], d["n_exact_groups"], d["n_near_groups"], d["n_cross_split"]) == (3, 2, 1, 2)
    assert d["n_images_in_groups"] == 6  # A x3, B, C x2: each image once
    assert result.summary["findings"]["duplicate_groups"] == 3


def test_fix_dedupes_exact_then_near_without_double_drops(layered):
    manifest, result = layered
    clean, changes = apply_fix(manifest, result)
    paths = [c["path"] for c in changes]
    assert len(paths) == len(set(paths))
    by_name = {Path(c["path"]).name: c for c in changes}
    assert by_name["A_copy.png"]["action"] == "drop" and by_name["A_copy2.png"]["action"] == "drop"
    assert by_name["C_copy.png"]["action"] == "drop" and "A.png" not in by_name and "B.png" not in by_name
    exact_ids = {g["id"] for g in result.groups if g["kind"] == "exact"}
    assert by_name["A_copy.png"]["group"] in exact_ids  # credited to the exact group, not the near one
    assert len(clean) == len(manifest) - 3 - 7
    again = audit(clean, progress=False, workers=1).summary["duplicates"]
    assert again["n_exact_groups"] == 0 and again["n_cross_split"] == 0 and again["n_near_groups"] == 1


def test_summary_and_report_show_both_layers(layered, monkeypatch):
    from rich.console import Console

    import medlens.auditing.summary as summary_module

    _, result = layered
    console = Console(record=True, width=200)
    print_summary(result, console)
    every = console.export_text()
    assert "skipped 7 of 23 files: 7 empty (0 bytes) — see audit.json" in every
    assert all(f"empty{i}.png: zero-byte file" in every for i in range(7))  # every broken file by name
    monkeypatch.setattr(summary_module, "SHOW_UNREADABLE", 3)
    console = Console(record=True, width=200)
    print_summary(result, console)
    text = console.export_text()
    assert "2 exact-duplicate groups (5 images)" in text and "1 near-duplicate groups" in text
    group_a = next(g for g in result.groups if g["kind"] == "exact" and g["size"] == 3)
    assert f"exact #{group_a['id']} (3 copies)" in text
    assert "empty2.png" in text and "empty3.png" not in text and "+4 more (see audit.json)" in text
    html = (result.out_dir / "audit.html").read_text()
    assert "2 exact-duplicate groups</b>" in html and "1 near-duplicate groups</b>" in html
    assert f"part of near group #{group_a['near_group']}" in html
    assert f"exact #{group_a['id']} ×3" in html


def test_exact_copies_inside_a_same_patient_near_group_are_still_findings(tmp_path):
    s0 = texture(7)
    rows = [
        {"image": save(tmp_path, name, arr), "patient_id": "P0", "split": "train", "label": "x"}
        for name, arr in (("s0.png", s0), ("s0_copy.png", s0), ("s1.png", _near(s0)))
    ]
    rows += [
        {
            "image": save(tmp_path, f"q{i}.png", texture(50 + i)),
            "patient_id": f"Q{i}",
            "split": "train",
            "label": "x",
        }
        for i in range(3)
    ]
    csv = tmp_path / "slices.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    s = audit(csv, progress=False, workers=1).summary
    kinds = {g["kind"]: g for g in s["duplicates"]["groups"]}
    assert set(kinds) == {"exact", "near"}
    assert kinds["near"]["flags"] == ["same-patient"] and not kinds["exact"]["same_patient"]
    assert s["duplicates"]["n_same_patient"] == 1 and s["findings"]["duplicate_groups"] == 1


def _independent_exact_groups(root: Path) -> tuple[set[frozenset[str]], int]:
    """md5 of the decoded pixels (PIL directly), R = G = B images canonicalised to one channel as medlens
    does; the groups of >= 2 files per hash, and the number of files."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    for p in files:
        with Image.open(p) as im:
            arr = np.asarray(im)
        if (
            arr.ndim == 3
            and arr.shape[-1] == 3
            and (arr[..., 0] == arr[..., 1]).all()
            and (arr[..., 0] == arr[..., 2]).all()
        ):
            arr = arr[..., 0]
        arr = np.ascontiguousarray(arr)
        h = hashlib.md5(f"{arr.dtype.str}|{arr.shape}".encode() + arr.tobytes()).hexdigest()
        by_hash[h].append(str(p.resolve()))
    return {frozenset(v) for v in by_hash.values() if len(v) > 1}, len(files)


@pytest.mark.slow
def test_exact_groups_match_an_independent_hash_on_real_brain_mri(shared_data, tmp_path):
    root = shared_data / "brain-tumor-mri" / "Training"
    if not root.is_dir():
        pytest.skip("brain-tumor-mri/Training is not in ../shared/data")
    expected, n_files = _independent_exact_groups(root)
    result = audit(root, tmp_path, progress=False, workers=2)
    d = result.summary["duplicates"]
    assert result.summary["n_images"] == n_files
    exact = [g for g in result.groups if g["kind"] == "exact"]
    got = {frozenset(str(Path(m["path"]).resolve()) for m in g["members"]) for g in exact}
    assert d["n_exact_groups"] == len(expected) == len(exact)
    assert got == expected
    assert d["exact"]["n_images"] == sum(len(g) for g in expected)
    for g in result.groups:
        if g["kind"] == "near":
            assert len(g["units"]) >= 2 and len({m["pixel_hash"] for m in g["members"]}) == len(g["units"])
    ex, ne = d["exact"], d["near"]
    print(
        f"\nbrain-MRI Training: {len(expected)} exact groups ({ex['n_images']} images), "
        f"{d['n_near_groups']} near groups ({ne['n_units']} units, "
        f"{ne['n_exact_groups_linked']} exact groups linked), cross-split exact {ex['n_cross_split']} "
        f"near {ne['n_cross_split']}, label conflicts "
        f"exact {ex['n_label_conflict']} near {ne['n_label_conflict']}, images in groups "
        f"{d['n_images_in_groups']}"
    )
