"""Reader study: simulated readers of known skill, hand-computed tables, Fleiss' textbook example, loading."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from medlens.errors import MedlensError
from medlens.evaluation.operating_points import wilson
from medlens.evaluation.reader_plots import plot_readers_roc
from medlens.evaluation.readers import (
    _fleiss_kappa,
    load_readers,
    reader_study,
    simulate_readers,
)

BINARY = ["benign", "malignant"]
SKILLS = {"expert": 0.95, "senior": 0.85, "junior": 0.65}

# Fleiss (1971) as worked on Wikipedia ("Fleiss' kappa"): 10 subjects, 14 raters, 5 categories.
# P-bar = 0.378, P-bar_e = 0.213 -> kappa = (0.378 - 0.213) / (1 - 0.213) = 0.210.
FLEISS_TABLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def _model(y_true: np.ndarray, n_classes: int, seed: int = 1) -> np.ndarray:
    """A noisy model: softmax of Gaussian logits with a bonus on the true class."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(y_true), n_classes))
    logits[np.arange(len(y_true)), y_true] += 1.5
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _expected_kappa(s1: float, s2: float, prevalence: float) -> float:
    """Cohen's kappa of two binary readers who are right with probability s1, s2 independently given truth."""
    observed = s1 * s2 + (1 - s1) * (1 - s2)
    q1 = prevalence * s1 + (1 - prevalence) * (1 - s1)  # P(reader says positive)
    q2 = prevalence * s2 + (1 - prevalence) * (1 - s2)
    chance = q1 * q2 + (1 - q1) * (1 - q2)
    return (observed - chance) / (1 - chance)


@pytest.fixture(scope="module")
def binary_study():
    rng = np.random.default_rng(7)
    y = (rng.random(600) < 0.4).astype(np.int64)
    ids = [f"c{i:03d}" for i in range(len(y))]
    probs = _model(y, 2)
    readers = simulate_readers(y, BINARY, SKILLS, seed=3, case_ids=ids)
    study = reader_study(ids, y, probs, BINARY, readers, positive=[1])
    return y, ids, probs, readers, study


def test_simulated_readers_recover_their_skill(binary_study):
    y, _, _, _, study = binary_study
    assert study["n_readers"] == 3 and study["n_cases"] == 600 and study["n_cases_read"] == 600
    assert study["cases_without_reader"] == 0 and study["unmatched_rows"] == 0
    by_name = {r["reader"]: r for r in study["per_reader"]}
    assert list(by_name) == list(SKILLS)
    for name, skill in SKILLS.items():
        entry = by_name[name]
        assert entry["n"] == 600
        for stat in (
            entry["accuracy"],
            entry["per_class"]["malignant"]["sensitivity"],
            entry["per_class"]["malignant"]["specificity"],
        ):
            lo, hi = stat["ci95"]
            assert lo <= skill <= hi, (name, stat)
            assert lo < stat["value"] < hi
            assert hi - lo < 0.15
    # the interval is Wilson's on the reader's own counts
    senior = by_name["senior"]["per_class"]["malignant"]["sensitivity"]
    n_pos = int((y == 1).sum())
    k = round(senior["value"] * n_pos)
    assert senior["ci95"] == pytest.approx([float(v) for v in wilson(k, n_pos)])


def test_kappas_are_ordered_close_to_theory_and_equal_sklearn(binary_study):
    y, ids, probs, readers, study = binary_study
    prevalence = y.mean()
    labels = {
        name: part.set_index("case_id").loc[ids, "label"].map(BINARY.index).to_numpy()
        for name, part in readers.groupby("reader", sort=False)
    }
    pairs = {(p["a"], p["b"]): p for p in study["kappa_pairs"]}
    assert set(pairs) == set(combinations(SKILLS, 2))
    for (a, b), pair in pairs.items():
        assert pair["n"] == 600
        assert pair["value"] == cohen_kappa_score(labels[a], labels[b])  # exactly sklearn's
        assert pair["value"] == pytest.approx(_expected_kappa(SKILLS[a], SKILLS[b], prevalence), abs=0.06)
    best = pairs[("expert", "senior")]["value"]
    assert best > pairs[("expert", "junior")]["value"] > pairs[("senior", "junior")]["value"]
    # by hand at prevalence 0.383: p_o = 0.815, q = 0.3950 and 0.4183, p_e = 0.5172 -> kappa = 0.617
    assert _expected_kappa(0.95, 0.85, prevalence) == pytest.approx(0.617, abs=1e-3)
    for entry in study["per_reader"]:
        expected = cohen_kappa_score(labels[entry["reader"]], probs.argmax(axis=1))
        assert entry["kappa_vs_model"] == {"value": expected, "n": 600}
    fleiss = study["fleiss_kappa"]
    assert fleiss["n_cases"] == 600 and fleiss["n_raters"] == 3
    assert min(p["value"] for p in pairs.values()) < fleiss["value"] < best


def test_majority_vote_beats_the_median_reader(binary_study):
    y, _, probs, _, study = binary_study
    vote = study["majority_vote"]
    accuracies = sorted(r["accuracy"]["value"] for r in study["per_reader"])
    # theory: P(at least 2 of 3 right) = 0.928 against the median reader's 0.85
    assert vote["accuracy"]["value"] > accuracies[1] + 0.03
    assert vote["accuracy"]["value"] == pytest.approx(0.928, abs=0.03)
    assert vote["n"] == 600 and vote["ties"] == 0  # three readers, two classes: never a tie
    assert 0 < vote["agreement_with_model"] < 1 and vote["kappa_vs_model"] is not None
    model = study["model_on_read_cases"]
    assert model["n"] == 600
    assert model["accuracy"]["value"] == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    tpr = np.mean(probs[y == 1, 1] >= 0.5)
    assert model["per_class"]["malignant"]["sensitivity"]["value"] == pytest.approx(tpr)


def test_hand_computed_small_study_with_unread_cases_and_unknown_ids():
    ids = ["1", "2", "3", "4", "5", "6"]
    y = np.array([1, 1, 1, 0, 0, 0])
    p1 = np.array([0.9, 0.6, 0.3, 0.4, 0.2, 0.1])
    probs = np.column_stack([1 - p1, p1])
    readers = pd.DataFrame(
        {
            "case_id": ["1", "2", "3", "4", "1", "2", "3", "4", "5", "99", "98"],
            "reader": ["A", "A", "A", "A", "B", "B", "B", "B", "B", "A", "B"],
            "label_index": [1, 1, 0, 0, 1, 0, 0, 1, 0, 1, 1],
        }
    )
    study = reader_study(ids, y, probs, BINARY, readers, positive=[1], threshold={1: 0.25})
    assert json.loads(json.dumps(study)) == study  # plain Python types only
    assert study["unmatched_rows"] == 2
    assert study["n_cases_read"] == 5 and study["cases_without_reader"] == 1  # case 6 is n/a
    a, b = study["per_reader"]
    # A read 1-4: right on 1, 2, 4 -> accuracy 3/4, sensitivity 2/3, specificity 1/1
    assert a["n"] == 4 and a["accuracy"]["value"] == 0.75
    assert a["per_class"]["malignant"]["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert a["per_class"]["malignant"]["specificity"]["value"] == 1.0
    # B read 1-5: right on 1, 5 -> 2/5; sensitivity 1/3, specificity 1/2
    assert b["n"] == 5 and b["accuracy"]["value"] == pytest.approx(0.4)
    assert b["per_class"]["malignant"]["specificity"]["value"] == 0.5
    # model at threshold 0.25 on cases 1-5: positive on 1, 2, 3, 4 -> sensitivity 3/3, specificity 1/2;
    # its argmax accuracy (threshold 0.5) is 4/5
    model = study["model_on_read_cases"]
    assert model["n"] == 5 and model["accuracy"]["value"] == pytest.approx(0.8)
    assert model["per_class"]["malignant"]["sensitivity"]["value"] == 1.0
    assert model["per_class"]["malignant"]["specificity"]["value"] == 0.5
    # pair A-B on cases 1-4: A = 1 1 0 0, B = 1 0 0 1 -> p_o = 1/2, p_e = 1/2 -> kappa 0
    assert study["kappa_pairs"] == [{"a": "A", "b": "B", "value": 0.0, "n": 4}]
    assert study["fleiss_kappa"]["n_cases"] == 4
    # majority vote: cases 2 and 4 tie (1 vs 0) and go to class 0; case 5 has B's vote only
    vote = study["majority_vote"]
    assert vote["ties"] == 2 and vote["n"] == 5
    assert vote["accuracy"]["value"] == pytest.approx(3 / 5)  # votes 1 0 0 0 0 against truth 1 1 1 0 0
    assert vote["agreement_with_model"] == pytest.approx(4 / 5)  # model argmax 1 1 0 0 0
    assert vote["per_class"]["malignant"]["sensitivity"]["value"] == pytest.approx(1 / 3)


def test_undefined_kappa_is_none_and_single_reader_has_no_fleiss():
    ids = ["a", "b", "c"]
    y = np.array([0, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])  # the model always says class 0
    readers = pd.DataFrame({"case_id": ids, "reader": "R", "label_index": [0, 0, 0]})
    study = reader_study(ids, y, probs, BINARY, readers, positive=[1])
    assert study["per_reader"][0]["kappa_vs_model"] == {"value": None, "n": 3}
    assert study["fleiss_kappa"] is None and study["kappa_pairs"] == []
    assert study["majority_vote"]["kappa_vs_model"] is None
    assert study["per_reader"][0]["per_class"]["malignant"]["sensitivity"]["value"] == 0.0


def test_fleiss_kappa_textbook_example():
    assert _fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=1e-4)
    # the same ratings as 14 readers of 10 cases, through reader_study
    categories = [f"k{j}" for j in range(5)]
    reads = np.stack([np.repeat(np.arange(5), row) for row in FLEISS_TABLE], axis=1)  # (raters, cases)
    ids = [f"s{i}" for i in range(10)]
    readers = pd.DataFrame(
        {
            "case_id": np.tile(ids, 14),
            "reader": np.repeat([f"r{r}" for r in range(14)], 10),
            "label_index": reads.ravel(),
        }
    )
    probs = np.full((10, 5), 0.2)
    study = reader_study(ids, np.zeros(10, dtype=int), probs, categories, readers, positive=[0])
    assert study["fleiss_kappa"]["value"] == pytest.approx(0.2099, abs=1e-4)
    assert study["fleiss_kappa"]["n_cases"] == 10 and study["fleiss_kappa"]["n_raters"] == 14
    assert len(study["kappa_pairs"]) == 14 * 13 // 2


def test_fleiss_kappa_matches_statsmodels(binary_study):
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    assert _fleiss_kappa(FLEISS_TABLE) == pytest.approx(inter_rater.fleiss_kappa(FLEISS_TABLE), abs=1e-12)
    _, ids, _, readers, study = binary_study
    wide = readers.pivot(index="case_id", columns="reader", values="label").loc[ids]
    table, _ = inter_rater.aggregate_raters(wide.map(BINARY.index).to_numpy())
    assert study["fleiss_kappa"]["value"] == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)


def test_multiclass_study_with_partial_reads():
    names = ["normal", "benign", "malignant", "other"]
    rng = np.random.default_rng(11)
    y = rng.integers(0, 4, 400)
    ids = [str(i) for i in range(400)]
    probs = _model(y, 4, seed=2)
    readers = simulate_readers(y, names, {"R1": 0.9, "R2": 0.7, "R3": 0.5}, seed=5)
    # R3 reads only the first 300 cases; nobody reads the last 20; two rows for unknown cases
    readers = readers[~((readers["reader"] == "R3") & (readers["case_id"].astype(int) >= 300))]
    readers = readers[readers["case_id"].astype(int) < 380]
    extra = pd.DataFrame({"case_id": ["x1", "x2"], "reader": ["R1", "R2"], "label": ["normal", "other"]})
    readers = pd.concat([readers, extra], ignore_index=True)
    study = reader_study(ids, y, probs, names, readers, positive=[1, 2], threshold={2: 0.4})
    assert study["cases_without_reader"] == 20 and study["n_cases_read"] == 380
    assert study["unmatched_rows"] == 2
    r1, r2, r3 = study["per_reader"]
    assert (r1["n"], r2["n"], r3["n"]) == (380, 380, 300)
    assert set(r1["per_class"]) == {"benign", "malignant"}
    for entry, skill in ((r1, 0.9), (r2, 0.7), (r3, 0.5)):
        lo, hi = entry["accuracy"]["ci95"]
        assert lo <= skill <= hi
    # a wrong read is one of the 3 other classes, so specificity for c is 1 - (1 - skill) / 3 = 0.9 on
    # average; sd over ~285 non-malignant cases ~ 0.018
    spec = r2["per_class"]["malignant"]["specificity"]
    assert spec["value"] == pytest.approx(0.9, abs=0.06)
    assert spec["ci95"][0] < spec["value"] < spec["ci95"][1]
    pairs = {(p["a"], p["b"]): p for p in study["kappa_pairs"]}
    assert pairs[("R1", "R3")]["n"] == 300 and pairs[("R1", "R2")]["n"] == 380
    both = readers[readers["case_id"].isin([str(i) for i in range(300)])]
    wide = both.pivot(index="case_id", columns="reader", values="label")
    expected = cohen_kappa_score(wide["R1"], wide["R3"], labels=names)
    assert pairs[("R1", "R3")]["value"] == pytest.approx(expected, abs=1e-12)
    assert study["fleiss_kappa"]["n_cases"] == 300
    # model: argmax for benign, probability >= 0.4 for malignant, on the 380 read cases
    read = np.arange(400) < 380
    model = study["model_on_read_cases"]["per_class"]
    sens_benign = np.mean(probs[read & (y == 1)].argmax(axis=1) == 1)
    spec_malignant = np.mean(probs[read & (y != 2), 2] < 0.4)
    assert model["benign"]["sensitivity"]["value"] == pytest.approx(sens_benign)
    assert model["malignant"]["specificity"]["value"] == pytest.approx(spec_malignant)


def test_reader_study_refuses_bad_input():
    y = np.array([0, 1])
    probs = np.array([[0.7, 0.3], [0.2, 0.8]])
    readers = pd.DataFrame({"case_id": ["a", "b"], "reader": "R", "label_index": [0, 1]})
    with pytest.raises(MedlensError, match="none of the 2 reader rows"):
        reader_study(["x", "y"], y, probs, BINARY, readers, positive=[1])
    with pytest.raises(MedlensError, match="repeats 'a'"):
        reader_study(["a", "a"], y, probs, BINARY, readers, positive=[1])
    with pytest.raises(MedlensError, match="positive class 2"):
        reader_study(["a", "b"], y, probs, BINARY, readers, positive=[2])
    clash = pd.concat([readers, readers.assign(label_index=[1, 1])], ignore_index=True)
    with pytest.raises(MedlensError, match="different answers for case 'a' by reader 'R'"):
        reader_study(["a", "b"], y, probs, BINARY, clash, positive=[1])


def test_load_readers_probability_column(tmp_path):
    path = tmp_path / "reads.csv"
    path.write_text("case_id,reader,probability\n007,A,0.5\n008,A,0.49\n007,B,0.93\n007,B,0.93\n")
    df = load_readers(path, BINARY)
    assert list(df.columns) == ["case_id", "reader", "label_index", "probability"]
    assert df["case_id"].tolist() == ["007", "008", "007"]  # strings, duplicates of one answer kept once
    assert df["label_index"].tolist() == [1, 0, 1]
    assert df["probability"].tolist() == [0.5, 0.49, 0.93]
    assert df["label_index"].dtype == np.int64


def test_load_readers_labels_and_errors(tmp_path):
    good = tmp_path / "labels.csv"
    good.write_text("case_id,reader,label\n1,A,malignant\n2,A,benign\n")
    df = load_readers(good, BINARY)
    assert df["label_index"].tolist() == [1, 0] and df["probability"].isna().all()

    bad_label = tmp_path / "bad_label.csv"
    bad_label.write_text("case_id,reader,label\n1,A,malignant\n2,A,Malignnt\n")
    with pytest.raises(MedlensError, match=r"bad_label.csv line 3 has label 'Malignnt'.*benign"):
        load_readers(bad_label, BINARY)

    no_answer = tmp_path / "no_answer.csv"
    no_answer.write_text("case_id,reader,score\n1,A,3\n")
    with pytest.raises(MedlensError, match=r"no_answer.csv lacks column\(s\) \['label or probability'\]"):
        load_readers(no_answer, BINARY)
    no_reader = tmp_path / "no_reader.csv"
    no_reader.write_text("case,label\n1,benign\n")
    with pytest.raises(MedlensError, match=r"no_reader.csv lacks column.*'case_id', 'reader'.*has \['case'"):
        load_readers(no_reader, BINARY)

    out_of_range = tmp_path / "prob.csv"
    out_of_range.write_text("case_id,reader,probability\n1,A,1.2\n")
    with pytest.raises(MedlensError, match=r"prob.csv line 2 has probability '1.2'"):
        load_readers(out_of_range, BINARY)
    with pytest.raises(MedlensError, match="only meaningful for a binary task"):
        load_readers(_write(tmp_path / "p3.csv", "case_id,reader,probability\n1,A,0.3\n"), ["a", "b", "c"])

    clash = tmp_path / "clash.csv"
    clash.write_text("case_id,reader,label\n1,A,benign\n1,A,malignant\n")
    with pytest.raises(MedlensError, match=r"clash.csv has different answers .* \(lines 2, 3\)"):
        load_readers(clash, BINARY)
    with pytest.raises(MedlensError, match="does not exist"):
        load_readers(tmp_path / "missing.csv", BINARY)


def _write(path, text):
    path.write_text(text)
    return path


def test_plot_readers_roc_writes_png(tmp_path, binary_study):
    y, ids, probs, readers, _ = binary_study
    keep = readers[readers["case_id"] >= "c050"]  # the first 50 cases are unread
    study = reader_study(ids, y, probs, BINARY, keep, positive=[1])
    assert study["cases_without_reader"] == 50
    out = plot_readers_roc(y, probs, BINARY, study, 1, tmp_path / "fig" / "readers_roc.png")
    assert out == tmp_path / "fig" / "readers_roc.png"
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(MedlensError, match="positive=\\[0\\]"):
        plot_readers_roc(y, probs, BINARY, study, 0, tmp_path / "other.png")
