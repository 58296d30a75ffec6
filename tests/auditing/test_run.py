"""medlens audit on generated datasets: every planted problem is found, a clean dataset has no findings."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from image_helpers import save, texture
from PIL import Image

from medlens.auditing.fix import apply_fix, fix_manifest
from medlens.auditing.run import audit, print_summary
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError


def base_rows(root, n: int, seed0: int = 0, populations=(80.0,)) -> list[dict]:
    rows = []
    for i in range(n):
        label = "a" if i % 2 == 0 else "b"
        split = "test" if i % 4 == 3 else "train"
        mean = populations[(i // 2) % len(populations)]
        rows.append(
            {
                "image": save(root, f"{split}/{label}/img{i:03d}.png", texture(seed0 + i, mean=mean)),
                "label": label,
                "split": split,
                "population": mean,
            }
        )
    return rows


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """32 distinct images in two intensity populations plus one of each planted problem."""
    root = tmp_path_factory.mktemp("planted")
    rows = base_rows(root, 32, populations=(60.0, 180.0))
    imgs = {r["image"]: np.asarray(Image.open(root / r["image"])) for r in rows}
    src = [r["image"] for r in rows]
    good = io.BytesIO()
    Image.fromarray(texture(99)).save(good, "PNG")
    (root / "train/a/corrupt.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    (root / "train/a/empty.png").write_bytes(b"")
    (root / "train/b/notes.txt").write_text("not an image")
    rows += [
        {"image": "train/a/corrupt.png", "label": "a", "split": "train"},
        {"image": "train/a/empty.png", "label": "a", "split": "train"},
        {"image": "train/b/notes.txt", "label": "b", "split": "train"},
    ]
    small = np.asarray(Image.fromarray(imgs[src[1]]).resize((51, 51), Image.Resampling.BILINEAR))
    planted = {
        "jpeg_cross_split": (
            src[0],
            save(root, "test/a/img000_copy.jpg", imgs[src[0]], quality=75),
            "test",
            "a",
        ),
        "resized": (src[1], save(root, "train/b/img001_small.png", small), "train", "b"),
        "exact_cross_split": (src[2], save(root, "test/a/img002_copy.png", imgs[src[2]]), "test", "a"),
        "rgb_copy": (
            src[4],
            save(root, "train/a/img004_rgb.png", np.stack([imgs[src[4]]] * 3, -1)),
            "train",
            "a",
        ),
        "label_conflict": (src[6], save(root, "train/b/img006_relabelled.png", imgs[src[6]]), "train", "b"),
    }
    for _, copy, split, label in planted.values():
        rows.append({"image": copy, "label": label, "split": split})
    for k in range(2):
        rows.append(
            {
                "image": save(root, f"train/a/wide{k}.png", texture(500 + k, size=(40, 160))),
                "label": "a",
                "split": "train",
            }
        )
    manifest = Manifest(pd.DataFrame(rows).drop(columns="population"), root, source="planted")
    result = audit(manifest, tmp_path_factory.mktemp("out"), progress=False, workers=2)
    return manifest, result, planted, rows


def _group_of(result, image: str):
    return next((g for g in result.groups if image in {m["image"] for m in g["members"]}), None)


def test_unreadable_files_are_found_with_reasons(planted):
    _, result, _, _ = planted
    found = {u["path"].split("/")[-1]: u for u in result.to_dict()["unreadable"]}
    assert set(found) == {"corrupt.png", "empty.png", "notes.txt"}
    assert found["empty.png"]["kind"] == "zero-byte"
    assert "not an image file" in found["notes.txt"]["reason"]
    assert found["corrupt.png"]["reason"]


def test_every_planted_duplicate_is_found_and_labelled(planted):
    _, result, copies, _ = planted
    for name, (original, copy, _, _) in copies.items():
        group = _group_of(result, copy)
        assert group is not None and original in {m["image"] for m in group["members"]}, name
    assert _group_of(result, copies["exact_cross_split"][1])["kind"] == "exact"
    assert _group_of(result, copies["rgb_copy"][1])["kind"] == "exact"  # R=G=B copy hashes like the original
    assert _group_of(result, copies["jpeg_cross_split"][1])["kind"] == "near"
    assert _group_of(result, copies["exact_cross_split"][1])["cross_split"]
    assert _group_of(result, copies["jpeg_cross_split"][1])["flags"] == ["cross-split"]
    assert _group_of(result, copies["label_conflict"][1])["label_conflict"]
    assert _group_of(result, copies["resized"][1])["flags"] == ["within-split"]
    assert len(result.groups) == len(copies)  # and no false alarm among the 32 distinct images


def test_size_outliers_and_rules(planted):
    _, result, _, _ = planted
    outliers = {o["path"].split("/")[-1]: o for o in result.to_dict()["size_outliers"]}
    assert set(outliers) == {"wide0.png", "wide1.png", "img001_small.png"}
    assert outliers["wide0.png"]["size"] == [160, 40]
    assert set(outliers["wide0.png"]["rules"]) == {"3sigma", "mad"}
    # the two wide images inflate sigma so much that only the robust rule sees the 51x51 copy
    assert outliers["img001_small.png"]["rule"] == "mad"


def test_census_classes_and_clusters(planted):
    manifest, result, _, rows = planted
    s = result.to_dict()
    assert s["schema"] == "medlens.audit/1" and s["n_images"] == len(manifest)
    assert s["census"]["modes"] == {"L": len(rows) - 4, "RGB": 1}
    assert s["classes"]["test"] == {"a": 2, "b": 8}
    assert s["class_balance"]["class_weights"]["a"] < s["class_balance"]["class_weights"]["b"]
    clusters = s["clusters"]
    assert clusters["k"] == 2 and set(clusters["silhouette"]) == {str(k) for k in range(2, 9)}
    assert [round(c["mean_intensity"] / 60) for c in clusters["clusters"]] == [1, 3]  # 60 and 180
    table = result.table.set_index("image")
    for r in rows[:32]:
        assert table.loc[r["image"], "cluster"] == (0 if r["population"] == 60.0 else 1)
    assert result.findings_count == 3 + 3 + 5


def test_outputs_written_and_self_contained(planted):
    _, result, _, _ = planted
    data = json.loads((result.out_dir / "audit.json").read_text())
    assert data["duplicates"]["n_cross_split"] == 2 and data["duplicates"]["threshold"] == 6
    html = (result.out_dir / "audit.html").read_text()
    assert "data:image/png;base64," in html and "data:image/jpeg;base64," in html
    assert not re.search(r"""(src|href)=["'](https?:|//|/)""", html)  # nothing fetched from elsewhere
    assert "img002_copy.png" in html and "cross-split" in html


def test_print_summary_fits_a_screen(planted):
    from rich.console import Console

    console = Console(record=True, width=120)
    print_summary(planted[1], console)
    text = console.export_text()
    assert "duplicate groups" in text and "[cross-split]" in text and "classes [test]" in text
    assert len(text.splitlines()) < 40


def test_fix_removes_leakage_conflicts_and_broken_files(planted, tmp_path):
    manifest, _, _copies, _ = planted
    result = audit(manifest, fix=tmp_path / "clean.csv", progress=False, workers=1)
    clean = Manifest.load(tmp_path / "clean.csv")
    changes = {(c["action"], c["path"].split("/")[-1]) for c in result.changes}
    assert ("drop", "empty.png") in changes and ("drop", "notes.txt") in changes
    assert ("drop", "img002_copy.png") in changes  # the test copy of an exact pair; train keeps its own
    assert ("move", "img000_copy.jpg") in changes  # near copy in test moves to train
    assert ("drop", "img006.png") in changes and ("drop", "img006_relabelled.png") in changes
    assert len(clean) == len(manifest) - sum(a == "drop" for a, _ in changes)
    assert result.to_dict()["fix"]["n_moved"] == 1
    again = audit(clean, progress=False, workers=1)
    assert again.to_dict()["unreadable"] == []
    assert not any(g["cross_split"] or g["label_conflict"] or g["kind"] == "exact" for g in again.groups)


def test_fix_prefer_test_and_fix_manifest(planted):
    manifest, result, _copies, _ = planted
    _clean, changes = apply_fix(manifest, result, prefer="test")
    moved = [c for c in changes if c["action"] == "move"]
    assert moved and all(c["to_split"] == "test" for c in moved)
    assert any(c["path"].endswith("img002.png") and c["action"] == "drop" for c in changes)
    clean2, changes2, result2 = fix_manifest(manifest, progress=False, workers=1)
    assert len(clean2) < len(manifest) and result2.to_dict()["fix"]["n_dropped"] == len(
        [c for c in changes2 if c["action"] == "drop"]
    )


def test_clean_dataset_has_no_findings(tmp_path):
    rows = base_rows(tmp_path, 24, seed0=1000)
    manifest = Manifest(pd.DataFrame(rows).drop(columns="population"), tmp_path)
    result = audit(manifest, progress=False, workers=2)
    s = result.to_dict()
    assert s["unreadable"] == [] and s["size_outliers"] == [] and s["duplicates"]["groups"] == []
    assert result.findings_count == 0
    assert s["classes"]["all"] == {"a": 12, "b": 12}
    clean, changes = apply_fix(manifest, result)
    assert changes == [] and len(clean) == len(manifest)


def test_bad_arguments_and_sources(planted, tmp_path):
    manifest, result, _, _ = planted
    with pytest.raises(
        MedlensError, match="near_threshold must be a whole number of bits from 0 to 64, got 65"
    ):
        audit(manifest, near_threshold=65, progress=False)
    with pytest.raises(MedlensError, match="prefer must be 'train' or 'test', got 'val'"):
        audit(manifest, prefer="val", progress=False)
    with pytest.raises(MedlensError, match="workers must be a positive whole number"):
        audit(manifest, workers=0, progress=False)
    with pytest.raises(MedlensError, match=r"audit source .*missing does not exist"):
        audit(tmp_path / "missing", progress=False)
    with pytest.raises(MedlensError, match="does not match manifest"):
        apply_fix(manifest.subset(split="train"), result)
    with pytest.raises(MedlensError, match="has no cases"):
        audit(Manifest(pd.DataFrame({"image": []}), tmp_path), progress=False)


def test_audit_accepts_a_manifest_csv(planted, tmp_path):
    manifest = planted[0].subset(split="test")
    path = manifest.save(tmp_path / "m.csv")
    result = audit(path, progress=False, workers=1)
    assert result.to_dict()["n_images"] == len(manifest)


def test_folder_source_reports_stray_non_image_files(tmp_path):
    for i in range(6):
        save(tmp_path, f"{'ab'[i % 2]}/{i}.png", texture(2000 + i))
    (tmp_path / "a" / "scan.doc").write_text("a word document in a class folder")
    (tmp_path / "a" / "notes.txt").write_text("sidecar notes are fine")
    (tmp_path / "README.md").write_text("top-level files are not part of the image tree")
    result = audit(tmp_path, progress=False, workers=1)
    unreadable = result.to_dict()["unreadable"]
    assert [(Path(u["path"]).name, u["kind"]) for u in unreadable] == [("scan.doc", "non-image")]
    assert result.to_dict()["n_images"] == 6
