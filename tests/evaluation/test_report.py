"""The HTML report (self-contained, escaped, complete) and the figures it embeds."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from medlens.errors import MedlensError
from medlens.evaluation import plots
from medlens.evaluation.metrics import build_summary, calibration, cases_from_arrays, classification_metrics
from medlens.evaluation.report import render_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["glioma", "notumor", "pituitary"]


@pytest.fixture(scope="module")
def summary() -> dict:
    y = np.array([0, 0, 0, 1, 1, 2])
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.1, 0.2, 0.7]]
    )
    ids = ["<script>alert(1)</script>", "c1", "c2", "c3", "c4", "c5"]
    result = classification_metrics(y, probs, NAMES, n_bootstrap=100)
    cases = cases_from_arrays(ids, None, y, probs, NAMES)
    return build_summary(
        task="classification",
        run="runs/brain-cnn",
        data="brain-tumor-mri",
        split="test",
        n_cases=6,
        metrics_result=result,
        cases=cases,
        extra={"model": "small_cnn"},
    )


def _self_contained(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    sources = re.findall(r'<img src="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def test_report_is_complete_and_self_contained(summary, tmp_path):
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.7, 0.5],
            "val_loss": [1.1, 0.8, 0.7],
            "val_accuracy": [0.5, 0.6, 0.7],
            "lr": [1e-3, 5e-4, 1e-4],
        }
    )
    history_png = plots.plot_history(history, tmp_path / "history.png")
    out = render_report(
        summary,
        tmp_path / "report.html",
        figures={"history": history_png},
        config={"model": "small_cnn", "epochs": 3},
        data_summary={"train": {"glioma": 30, "notumor": 20}, "test": {"glioma": 3}},
        skipped=[{"path": "Training/glioma/broken.jpg", "reason": "truncated JPEG"}],
    )
    html = out.read_text(encoding="utf-8")
    _self_contained(html)
    assert "Metrics on split: test (n = 6 cases)" in html
    assert "0.667" in html  # accuracy 4/6
    assert "0.722" in html  # balanced accuracy 13/18
    lo, hi = summary["metrics"]["accuracy"]["ci95"]
    assert f"[{lo:.3f}, {hi:.3f}]" in html
    assert "Training/glioma/broken.jpg" in html and "truncated JPEG" in html
    assert "macro avg" in html and "weighted avg" in html
    assert "epochs: 3" in html  # the resolved config as YAML
    assert len(re.findall(r"<figure>", html)) == 4  # confusion matrix, ROC, reliability, history
    assert "Training history" in html


def test_case_ids_are_escaped(summary, tmp_path):
    html = render_report(summary, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # it is the worst-predicted list's member


def test_worst_cases_sorted_by_probability_of_true_class(summary, tmp_path):
    html = render_report(
        summary, tmp_path / "r.html", figures={"ROC": None, "reliability": None, "Confusion matrix": None}
    ).read_text()
    # p(true): c2 0.3, c4 0.3, c1 0.6, c3 0.7, c5 0.7, script id 0.8 (ties keep the case order)
    section = html.split("Worst-predicted cases")[1]
    assert section.index(">c2<") < section.index(">c4<") < section.index(">c1<")
    assert "<figure>" not in html  # every standard figure was turned off
    assert "None: every file was read." in html


def test_report_rejects_missing_figure(summary, tmp_path):
    with pytest.raises(MedlensError, match="figure 'history' not found at"):
        render_report(summary, tmp_path / "r.html", figures={"history": tmp_path / "nope.png"})
    with pytest.raises(MedlensError, match="summary has no 'metrics'"):
        render_report({"schema": "x"}, tmp_path / "r.html")


def test_every_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), 60)
    paths = [
        plots.plot_confusion_matrix([[5, 1, 0], [2, 7, 1], [0, 0, 4]], NAMES, tmp_path / "cm.png"),
        plots.plot_roc(y, probs, NAMES, tmp_path / "roc3.png"),
        plots.plot_roc(
            y % 2, np.stack([1 - probs[:, 0], probs[:, 0]], 1), ["neg", "pos"], tmp_path / "roc2.png"
        ),
        plots.plot_reliability(calibration(y, probs), tmp_path / "rel.png"),
        plots.plot_learning_curve(
            pd.DataFrame(
                {
                    "fraction": [0.1, 0.2, 0.3],
                    "n_train": [40, 80, 120],
                    "value": [0.6, 0.7, 0.75],
                    "ci_low": [0.5, 0.6, 0.7],
                    "ci_high": [0.7, 0.8, 0.8],
                    "metric": "accuracy",
                }
            ),
            tmp_path / "lc.png",
        ),
        plots.plot_compare(
            pd.DataFrame(
                {
                    "run": ["a", "b"],
                    "accuracy": [0.8, 0.9],
                    "accuracy_ci_low": [0.7, 0.85],
                    "accuracy_ci_high": [0.85, 0.95],
                }
            ),
            tmp_path / "cmp.png",
        ),
    ]
    for path in paths:
        assert path.read_bytes().startswith(PNG_MAGIC), path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left


def test_plot_input_errors_name_the_problem(tmp_path):
    with pytest.raises(MedlensError, match="history has no numeric columns"):
        plots.plot_history(pd.DataFrame({"note": ["a", "b"]}), tmp_path / "h.png")
    with pytest.raises(MedlensError, match=r"lacks column\(s\) \['value'\]"):
        plots.plot_learning_curve(pd.DataFrame({"fraction": [0.1]}), tmp_path / "lc.png")
    with pytest.raises(MedlensError, match="does not match 2 class names"):
        plots.plot_confusion_matrix(np.eye(3), ["a", "b"], tmp_path / "cm.png")
    assert not list(tmp_path.iterdir())
