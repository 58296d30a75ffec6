"""Cohorts and the fairness audit: parsing, grouping, metadata joins, censoring, flags and the heat-map."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medlens.errors import MedlensError
from medlens.evaluation.cohort_plots import plot_fairness_heatmap
from medlens.evaluation.cohorts import (
    CohortSpec,
    assign_groups,
    attach_metadata,
    cohort_analysis,
    flag_level,
    load_metadata,
    parse_cohorts,
    resolve_column,
)


def _accuracy_score(correct: np.ndarray):
    """A task-agnostic score: accuracy of the given rows, with a prevalence."""

    def score(idx: np.ndarray) -> dict:
        value = float(correct[idx].mean())
        return {"accuracy": {"value": value, "ci95": [value - 0.05, value + 0.05]}, "prevalence": 0.5}

    return score


def _planted(biased: bool, n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    site = np.where(np.arange(n) < n // 2, "A", "B")
    attribute = rng.choice(["x", "y"], size=n)
    correct = np.zeros(n, dtype=bool)
    for name, rate in (("A", 0.9), ("B", 0.5 if biased else 0.9)):
        rows = np.flatnonzero(site == name)
        # exactly rate * size correct, at random positions: the planted accuracy cannot flap
        correct[rng.choice(rows, size=round(rate * len(rows)), replace=False)] = True
    table = pd.DataFrame(
        {"case_id": [f"c{i}" for i in range(n)], "patient_id": [f"p{i}" for i in range(n)], "site": site}
    )
    table["attribute"] = attribute
    return table, correct


# -- parsing -------------------------------------------------------------------------------------------
def test_parse_cohorts_reads_columns_and_bins():
    specs = parse_cohorts("gender,age:<40,40-60,>60")
    assert [s.column for s in specs] == ["gender", "age"]
    assert specs[0].bins is None
    assert [tuple(b) for b in specs[1].bins] == [
        ("<40", None, 40.0),
        ("40-60", 40.0, 60.0),
        (">60", 60.0, None),
    ]
    assert [s.column for s in parse_cohorts(" site , age:<=40,>40 , gender")] == ["site", "age", "gender"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gender,,age",
        "<40,gender",
        "age:",
        "age:<40,30-60",
        "age:<=40,40-60",
        "age:60-40",
        "age:<4x0",
        "a,a",
    ],
)
def test_parse_cohorts_rejects_bad_syntax_with_the_expected_form(text):
    with pytest.raises(MedlensError, match=r"expected|overlap|empty|twice") as err:
        parse_cohorts(text)
    assert "\n" not in str(err.value)


def test_bins_put_edges_in_the_closed_range_and_nan_in_missing():
    df = pd.DataFrame({"age": [39.9, 40, 50, 60, 60.1, np.nan, 80]})
    labels = assign_groups(df, parse_cohorts("age:<40,40-60,>60")[0])
    assert labels.tolist() == ["<40", "40-60", "40-60", "40-60", ">60", "missing", ">60"]


def test_quantile_binning_gives_three_similar_groups():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"age": rng.normal(50, 12, size=300).round(1)})
    labels = assign_groups(df, CohortSpec("age"))
    counts = labels.value_counts()
    assert len(counts) == 3
    assert counts.min() >= 80 and counts.max() <= 120
    low, middle, high = sorted(counts.index, key=lambda g: (g[0] != "<", g[0] == ">"))
    assert low.startswith("<") and high.startswith(">") and "-" in middle


def test_few_numeric_values_are_categories_without_trailing_zero():
    df = pd.DataFrame({"gender": [1.0, 2.0, 2.0, np.nan]})
    assert assign_groups(df, CohortSpec("gender")).tolist() == ["1", "2", "2", "missing"]


def test_resolve_column_by_token_prefix():
    df = pd.DataFrame(columns=["patient_id", "age_at_initial_pathologic", "gender"])
    assert resolve_column(df, "age") == "age_at_initial_pathologic"
    assert resolve_column(df, "gender") == "gender"
    with pytest.raises(MedlensError, match="age_at_initial_pathologic"):
        resolve_column(df, "weight")
    with pytest.raises(MedlensError, match="several"):
        resolve_column(pd.DataFrame(columns=["age_a", "age_b"]), "age")


# -- metadata -------------------------------------------------------------------------------------------
def test_attach_metadata_matches_kaggle_prefixes_without_overwriting(tmp_path):
    cases = pd.DataFrame(
        {
            "case_id": ["TCGA_CS_4941_19960909_1", "TCGA_CS_4942_19970222_3", "other_1"],
            "patient_id": ["TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222", "other"],
            "gender": ["kept", "kept", "kept"],
        }
    )
    csv = tmp_path / "data.csv"
    csv.write_text("Patient,gender,age_at_initial_pathologic\nTCGA_CS_4941,2,67\nTCGA_CS_4942,1,44\n")
    out = attach_metadata(cases, load_metadata(csv))
    assert out["age_at_initial_pathologic"].tolist()[:2] == [67, 44]
    assert np.isnan(out["age_at_initial_pathologic"].iloc[2])
    assert out["gender"].tolist() == ["kept"] * 3
    assert out.attrs["metadata_matched"] == 2


def test_load_metadata_names_the_columns_when_no_id(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("subject,age\n1,40\n")
    with pytest.raises(MedlensError, match=r"no 'patient_id' or 'Patient'.*subject"):
        load_metadata(csv)


def test_real_kaggle_3m_ids_match_folder_prefixes(shared_data):
    root = shared_data / "lgg-mri-segmentation" / "kaggle_3m"
    if not (root / "data.csv").is_file():
        pytest.skip("kaggle_3m/data.csv is not in ../shared/data")
    meta = load_metadata(root / "data.csv")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    out = attach_metadata(pd.DataFrame({"patient_id": folders}), meta)
    matched = {m for f in folders for m in meta["patient_id"] if f.startswith(m + "_")}
    assert matched == set(meta["patient_id"])
    assert out.attrs["metadata_matched"] == len(folders)
    assert out["age_at_initial_pathologic"].notna().sum() > 0.9 * len(folders)


# -- the audit -------------------------------------------------------------------------------------------
def test_planted_bias_is_critical_and_a_random_split_is_ok():
    table, correct = _planted(biased=True)
    result = cohort_analysis(table, parse_cohorts("site"), _accuracy_score(correct))
    site = result["columns"]["site"]
    assert site["reference"] == "A"  # equal sizes: the first in order
    b = next(g for g in site["groups"] if g["name"] == "B")
    assert b["ratio"]["accuracy"] == pytest.approx(0.5 / 0.9)
    assert b["flag"]["accuracy"] == "critical"
    assert result["flags"] == [
        {
            "column": "site",
            "group": "B",
            "metric": "accuracy",
            "ratio": pytest.approx(0.5 / 0.9),
            "level": "critical",
            "direction": "lower",
        }
    ]

    table, correct = _planted(biased=False)
    result = cohort_analysis(
        table, "site,attribute", _accuracy_score(correct), higher_is_better={"accuracy": True}
    )
    assert result["flags"] == []
    levels = {g["flag"]["accuracy"] for col in result["columns"].values() for g in col["groups"]}
    assert levels == {"ok"}


def test_censoring_hides_small_cells_and_min_cell_shows_them():
    table, correct = _planted(biased=False, n=107)
    table["site"] = ["small"] * 7 + ["big"] * 100
    result = cohort_analysis(table, [CohortSpec("site")], _accuracy_score(correct))
    small = result["columns"]["site"]["groups"][-1]
    assert (small["name"], small["n"], small["censored"]) == ("small", 7, True)
    assert small["metrics"] == {} and small["ratio"] == {} and small["prevalence"] is None
    shown = cohort_analysis(table, [CohortSpec("site")], _accuracy_score(correct), min_cell=5)
    small = shown["columns"]["site"]["groups"][-1]
    assert small["censored"] is False and "accuracy" in small["metrics"]


def test_reference_by_name_and_unknown_reference():
    table, correct = _planted(biased=True)
    result = cohort_analysis(table, "site,attribute", _accuracy_score(correct), reference="B")
    assert result["columns"]["site"]["reference"] == "B"
    a = result["columns"]["site"]["groups"][0]
    assert a["flag"]["accuracy"] == "critical" and a["ratio"]["accuracy"] == pytest.approx(1.8)
    assert result["columns"]["attribute"]["reference"] in ("x", "y")  # falls back to the largest
    with pytest.raises(MedlensError, match=r"'C'.*site: \['A', 'B'\]"):
        cohort_analysis(table, "site", _accuracy_score(correct), reference="C")


def test_groups_sort_bins_then_categories_by_size_missing_last():
    table = pd.DataFrame({"patient_id": list("abcdefghij"), "age": [30, 50, 70, 50, np.nan] * 2})
    table["site"] = ["s1", "s2", "s2", "s3", "s3", "s3", None, "s2", "s3", "s1"]
    result = cohort_analysis(table, "age:>60,40-60,<40,site", lambda idx: {}, min_cell=1)
    assert [g["name"] for g in result["columns"]["age"]["groups"]] == [">60", "40-60", "<40", "missing"]
    assert [g["name"] for g in result["columns"]["site"]["groups"]] == ["s3", "s2", "s1", "missing"]


def test_flag_bands():
    """seismometer's bands at its default limit 0.25: ok 0.8-1.25, critical beyond 1.5 / 0.667."""
    ratios = (1.0, 0.8, 1.25, 0.79, 1.3, 0.67, 1.5, 0.66, 1.51, None)
    assert [flag_level(r) for r in ratios] == [
        "ok",
        "ok",
        "ok",
        "flag",
        "flag",
        "flag",
        "flag",
        "critical",
        "critical",
        None,
    ]


def test_heatmap_writes_a_png(tmp_path):
    table, correct = _planted(biased=True)
    table.loc[:5, "attribute"] = "rare"
    result = cohort_analysis(table, "site,attribute", _accuracy_score(correct))
    path = plot_fairness_heatmap(result, tmp_path / "fairness.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    assert plot_fairness_heatmap({"columns": {}}, tmp_path / "none.png") is None
