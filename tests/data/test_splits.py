"""carve_validation and stratified_subset: proportions, patient grouping, determinism, bad fractions."""

from __future__ import annotations

import pandas as pd
import pytest

from medlens.data.manifest import Manifest
from medlens.data.splits import carve_validation, stratified_subset
from medlens.errors import MedlensError


def _manifest(counts: dict[str, int], split: str = "", per_patient: int = 1, test: int = 0) -> Manifest:
    """Cases of each class; ``per_patient`` consecutive cases of one class share a patient id."""
    rows = []
    for label, n in counts.items():
        for i in range(n):
            rows.append(
                {
                    "case_id": f"{label}-{i}",
                    "patient_id": f"{label}-p{i // per_patient}",
                    "split": split,
                    "image": f"{label}/{i}.png",
                    "label": label,
                }
            )
    rows += [{"case_id": f"t{i}", "split": "test", "image": f"t{i}.png", "label": "a"} for i in range(test)]
    return Manifest(pd.DataFrame(rows), "/data", source="toy")


def _counts(m: Manifest, split: str) -> dict[str, int]:
    return m.df[m.df["split"] == split]["label"].value_counts().to_dict()


def test_carve_is_stratified_and_leaves_test_alone():
    m = carve_validation(_manifest({"a": 100, "b": 50, "c": 10}, test=7), 0.2, seed=0)
    assert _counts(m, "val") == {"a": 20, "b": 10, "c": 2}
    assert _counts(m, "train") == {"a": 80, "b": 40, "c": 8}
    assert (m.df["split"] == "test").sum() == 7 and "" not in set(m.df["split"])


def test_carve_keeps_a_single_case_class_in_train():
    m = carve_validation(_manifest({"a": 9, "rare": 1}, split="train"), 0.3, seed=0)
    assert _counts(m, "val") == {"a": 3} and _counts(m, "train") == {"a": 6, "rare": 1}


@pytest.mark.parametrize("n_classes", [2, 7])
def test_one_case_per_class_says_what_is_wrong_and_what_to_do(n_classes):
    counts = {f"class{i}": 1 for i in range(n_classes)}
    with pytest.raises(MedlensError) as err:
        carve_validation(_manifest(counts), 0.2)
    shown = "class0, class1" if n_classes == 2 else "class0, class1, class2, class3, class4 and 2 more"
    assert str(err.value) == (
        f"cannot carve a validation split in toy: each class has a single training image ({shown}); each "
        "class needs at least 2 images, one to train on and one to validate: add images, or give validation "
        "cases yourself (a val folder beside train, or a split column in a CSV)"
    )


def test_carve_groups_patients():
    base = _manifest({"a": 60, "b": 30}, per_patient=3)
    m = carve_validation(base, 0.2, seed=3)
    val = set(m.df.loc[m.df["split"] == "val", "patient_id"])
    train = set(m.df.loc[m.df["split"] == "train", "patient_id"])
    assert val and not val & train  # no patient on both sides
    assert 0.1 <= len(val) / 30 <= 0.3 and set(_counts(m, "val")) == {"a", "b"}


def test_carve_is_deterministic_by_seed():
    base = _manifest({"a": 40, "b": 40})
    first, again = carve_validation(base, 0.25, seed=1), carve_validation(base, 0.25, seed=1)
    other = carve_validation(base, 0.25, seed=2)
    assert list(first.df["split"]) == list(again.df["split"])
    assert list(first.df["split"]) != list(other.df["split"])
    grouped = _manifest({"a": 40, "b": 40}, per_patient=4)
    assert list(carve_validation(grouped, 0.25, seed=5).df["split"]) == list(
        carve_validation(grouped, 0.25, seed=5).df["split"]
    )


def test_existing_validation_is_kept():
    df = pd.DataFrame(
        {"image": ["1.png", "2.png", "3.png"], "label": ["a", "b", "a"], "split": ["", "val", "train"]}
    )
    m = carve_validation(Manifest(df, "/data"), 0.5)
    assert list(m.df["split"]) == ["train", "val", "train"]


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.2"])
def test_carve_rejects_bad_fractions(bad):
    with pytest.raises(MedlensError, match=f"between 0 and 1 \\(exclusive\\), got {bad!r}"):
        carve_validation(_manifest({"a": 10}), bad)


def test_carve_needs_two_cases_or_patients():
    with pytest.raises(
        MedlensError,
        match=r"cannot carve a validation split from 1 training case\(s\) in "
        "toy",
    ):
        carve_validation(_manifest({"a": 1}), 0.2)
    with pytest.raises(MedlensError, match="all training cases belong to one patient"):
        carve_validation(_manifest({"a": 5}, per_patient=5), 0.2)


def test_subset_is_stratified_and_keeps_other_splits():
    base = carve_validation(_manifest({"a": 100, "b": 40, "c": 3}, test=5), 0.2, seed=0)
    sub = stratified_subset(base, 0.25, seed=0)
    assert _counts(sub, "train") == {"a": 20, "b": 8, "c": 1}  # at least one case of every class
    assert _counts(sub, "val") == _counts(base, "val") and (sub.df["split"] == "test").sum() == 5
    kept = set(sub.df["case_id"])
    assert kept <= set(base.df["case_id"])
    assert stratified_subset(base, 1.0) is base


def test_subset_is_deterministic_by_seed():
    base = _manifest({"a": 50, "b": 50}, split="train")
    ids = [list(stratified_subset(base, 0.3, seed=s).df["case_id"]) for s in (4, 4, 5)]
    assert ids[0] == ids[1] and ids[0] != ids[2]


@pytest.mark.parametrize("bad", [0, 1.5, -1, float("nan")])
def test_subset_rejects_bad_fractions(bad):
    with pytest.raises(MedlensError, match=rf"fraction must be in \(0, 1\] .*got {bad!r}"):
        stratified_subset(_manifest({"a": 10}, split="train"), bad)


def test_subset_needs_rows_in_the_split():
    with pytest.raises(MedlensError, match=r"no 'train' cases to subsample in toy; it has splits \['val'\]"):
        stratified_subset(_manifest({"a": 4}, split="val"), 0.5)
