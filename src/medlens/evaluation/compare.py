"""Compare evaluated runs side by side from their summary.json files.

Numbers are read, never recomputed. Runs scored on different data, splits or case counts get a warning in the
page: their metrics describe different cases and cannot be ranked against each other.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.errors import MedlensError
from medlens.evaluation.plots import compare_metric_columns, plot_compare
from medlens.evaluation.report import METRIC_LABELS, fmt, fmt_ci, render_template
from medlens.utils.files import atomic_write_text, check_output_path

INFO_COLUMNS = ("run", "model", "task", "data", "split", "n_cases")
LOWER_IS_BETTER = {"ece", "hd95"}
_MUST_MATCH = {"task": "tasks", "data": "data", "split": "splits", "n_cases": "numbers of cases"}


def compare(
    run_dirs: Sequence[str | Path], out_html: str | Path, *, summary_name: str = "summary.json"
) -> pd.DataFrame:
    """Tabulate and chart the metrics of several evaluated runs; write a self-contained compare.html.

    Args:
        run_dirs: run directories, each holding a summary.json written by ``medlens evaluate``.
        out_html: HTML file to write (atomically).
        summary_name: file name of the summary inside each run directory.

    Returns:
        One row per run: ``run``, ``model``, ``task``, ``data``, ``split``, ``n_cases``, then per metric
        ``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high`` (NaN where a run lacks the metric).
    """
    if not run_dirs:
        raise MedlensError("compare needs at least one run directory")
    # never over a run's file, a folder, or an HTML file medlens did not write
    check_output_path(out_html, sources=list(run_dirs), kind="file", what="HTML report", marker="report")
    loaded = [(Path(d), load_summary(d, summary_name)) for d in run_dirs]
    table = comparison_table(loaded)
    warnings = comparability_warnings(table)
    metrics = compare_metric_columns(table)
    with tempfile.TemporaryDirectory(prefix="medlens-compare-") as tmp:
        chart_src = ""
        if metrics:
            png = plot_compare(table, Path(tmp) / "compare.png").read_bytes()
            chart_src = f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}"
    html = render_template(
        "compare.html.j2",
        title="medlens: comparison of runs",
        warnings=warnings,
        headers=list(INFO_COLUMNS),
        metrics=[{"name": m, "label": METRIC_LABELS.get(m, m)} for m in metrics],
        ci_label=_ci_label([s for _, s in loaded]),
        rows=_html_rows(table, metrics),
        chart=chart_src,
    )
    atomic_write_text(out_html, html)
    return table


def load_summary(run_dir: str | Path, summary_name: str = "summary.json") -> dict[str, Any]:
    """Read a run's summary.json, with a one-line error telling the user what to do when it is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedlensError(f"run directory {run_dir} does not exist; check the path (runs live under runs/)")
    path = run_dir / summary_name
    if not path.is_file():
        raise MedlensError(f"run {run_dir} has no {summary_name}; run `medlens evaluate {run_dir}` first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MedlensError(f"cannot read {path}: {err}; re-run `medlens evaluate {run_dir}`") from err
    if not isinstance(summary, dict) or not str(summary.get("schema", "")).startswith("medlens.summary/"):
        raise MedlensError(
            f"{path} is not a medlens summary (no 'schema': 'medlens.summary/1'); "
            f"re-run `medlens evaluate {run_dir}`"
        )
    return summary


def comparison_table(loaded: Sequence[tuple[Path, dict[str, Any]]]) -> pd.DataFrame:
    """One row per (run directory, summary): run info, then value and CI bounds of every metric."""
    names = [str(d) for d, _ in loaded]
    rows = []
    for (run_dir, summary), name in zip(loaded, names):
        row: dict[str, Any] = {
            "run": name,
            "model": _model_name(run_dir, summary),
            "task": summary.get("task"),
            "data": summary.get("data"),
            "split": summary.get("split"),
            "n_cases": summary.get("n_cases"),
        }
        for metric, entry in (summary.get("metrics") or {}).items():
            entry = entry if isinstance(entry, dict) else {"value": entry}
            low, high = entry.get("ci95") or (None, None)
            row.update({metric: entry.get("value"), f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        rows.append(row)
    table = pd.DataFrame(rows)
    metric_cols = [c for c in table.columns if c not in INFO_COLUMNS]
    table[metric_cols] = table[metric_cols].astype(float)
    return table


def comparability_warnings(table: pd.DataFrame) -> list[str]:
    """One sentence per run attribute (task, data, split, n_cases) that differs between runs."""
    warnings = []
    for column, plural in _MUST_MATCH.items():
        values = [str(v) for v in dict.fromkeys(table[column].tolist())]
        if len(values) > 1:
            warnings.append(
                f"The runs were evaluated on different {plural} ({', '.join(values)}): "
                "their numbers are not comparable."
            )
    return warnings


def _model_name(run_dir: Path, summary: dict[str, Any]) -> str:
    """Model from the summary, else from the run's config.yaml; empty when neither says."""
    model = summary.get("model")
    if model is None:
        config = summary.get("config")
        model = config.get("model") if isinstance(config, dict) else None
    if model is None and (run_dir / "config.yaml").is_file():
        import yaml

        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            config = None  # the model name is a label only; a broken config must not stop the comparison
        model = config.get("model") if isinstance(config, dict) else None
    if isinstance(model, dict):
        model = model.get("name")
    return "" if model is None else str(model)


def _html_rows(table: pd.DataFrame, metrics: list[str]) -> list[dict[str, Any]]:
    best = {}
    for m in metrics:
        values = table[m].dropna()
        if len(values) > 1:
            best[m] = values.min() if m in LOWER_IS_BETTER else values.max()
    rows = []
    for _, r in table.iterrows():
        cells = [
            {
                "value": fmt(None if pd.isna(r[m]) else float(r[m])),
                "ci": fmt_ci(None if pd.isna(r[f"{m}_ci_low"]) else [r[f"{m}_ci_low"], r[f"{m}_ci_high"]]),
                "best": m in best and r[m] == best[m],
            }
            for m in metrics
        ]
        info = [
            "" if v is None or (isinstance(v, float) and pd.isna(v)) else v for v in r[list(INFO_COLUMNS)]
        ]
        rows.append({"info": info, "cells": cells})
    return rows


def _ci_label(summaries: list[dict[str, Any]]) -> str:
    levels = {float((s.get("bootstrap") or {}).get("ci", 0.95)) for s in summaries}
    return f"[{100 * levels.pop():g} % CI]" if len(levels) == 1 else "[CI; levels differ between runs]"
