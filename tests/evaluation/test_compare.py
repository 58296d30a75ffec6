"""Comparing runs from their summary.json files."""

from __future__ import annotations

import re

import pytest

from medlens.errors import MedlensError
from medlens.evaluation.compare import compare
from medlens.utils.files import atomic_write_text, write_json


def _summary(split="test", n_cases=100, accuracy=0.9, model=None) -> dict:
    summary = {
        "schema": "medlens.summary/1",
        "task": "classification",
        "run": "runs/x",
        "data": "brain",
        "split": split,
        "n_cases": n_cases,
        "metrics": {
            "accuracy": {"value": accuracy, "ci95": [accuracy - 0.05, accuracy + 0.03]},
            "auc_ovr": {"value": None, "ci95": None, "note": "undefined"},
        },
        "per_class": {},
        "cases": [],
    }
    if model is not None:
        summary["model"] = model
    return summary


def _run(tmp_path, name, **kw):
    run_dir = tmp_path / name
    write_json(run_dir / "summary.json", _summary(**kw))
    return run_dir


def test_two_runs_give_a_table_and_a_self_contained_page(tmp_path):
    a = _run(tmp_path, "cnn", accuracy=0.80, model={"name": "small_cnn"})
    b = _run(tmp_path, "resnet", accuracy=0.90)
    atomic_write_text(b / "config.yaml", "model: resnet18\nepochs: 3\n")  # model taken from the config
    table = compare([a, b], tmp_path / "compare.html")
    assert len(table) == 2
    assert table["model"].tolist() == ["small_cnn", "resnet18"]
    assert table["accuracy"].tolist() == pytest.approx([0.80, 0.90])
    assert table["accuracy_ci_low"].tolist() == pytest.approx([0.75, 0.85])
    assert table["auc_ovr"].isna().all()
    html = (tmp_path / "compare.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "data:image/png;base64," in html and "<script" not in html
    assert '<td class="num best">0.900' in html and "[0.850, 0.930]" in html
    assert "not comparable" not in html


def test_missing_summary_says_to_evaluate_first(tmp_path):
    a = _run(tmp_path, "done")
    (tmp_path / "pending").mkdir()
    expected = r"run .*pending has no summary.json; run `medlens evaluate .*pending` first"
    with pytest.raises(MedlensError, match=expected):
        compare([a, tmp_path / "pending"], tmp_path / "compare.html")
    with pytest.raises(MedlensError, match="run directory .*nowhere does not exist"):
        compare([tmp_path / "nowhere"], tmp_path / "compare.html")
    atomic_write_text(tmp_path / "pending" / "summary.json", "{not json")
    with pytest.raises(MedlensError, match="cannot read .*summary.json"):
        compare([tmp_path / "pending"], tmp_path / "compare.html")
    assert not (tmp_path / "compare.html").exists()


def test_mismatched_splits_and_sizes_are_flagged(tmp_path):
    a = _run(tmp_path, "a", split="test", n_cases=100)
    b = _run(tmp_path, "b", split="val", n_cases=80)
    compare([a, b], tmp_path / "compare.html")
    html = (tmp_path / "compare.html").read_text(encoding="utf-8")
    assert "different splits (test, val): their numbers are not comparable" in html
    assert "different numbers of cases (100, 80)" in html
    assert "different data" not in html
