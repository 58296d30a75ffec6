"""The one writer of an evaluation's files, for every task: summary.json, predictions.csv, report.html.

A task's evaluate hook (or its named evaluator) returns an :class:`~medlens.tasks.base.Evaluation`; this
module turns it into the files. summary.json is the single source of truth: report.html is rendered from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from medlens.evaluation.metrics import build_summary
from medlens.evaluation.model_card import write_model_card
from medlens.evaluation.plots import plot_history
from medlens.evaluation.report import render_report
from medlens.models.run_files import read_run_yaml
from medlens.tasks.base import EvalContext, Evaluation
from medlens.utils.files import atomic_write_text, mark_output, write_json


def write_evaluation(task: str, ev: Evaluation, ctx: EvalContext) -> dict[str, Any]:
    """Write ``ctx.out``/summary.json, predictions.csv, model_card.md, figures/history.png and report.html.

    Args:
        task: the task's name (summary.json ``task``).
        ev: what the task's evaluation produced.
        ctx: the run, data, split and output folder.

    Returns:
        The summary dict (as written).
    """
    summary = build_summary(
        task=task,
        run=ctx.run,
        data=ctx.data,
        split=ctx.split,
        n_cases=len(ev.cases),
        metrics_result=ev.result,
        cases=ev.cases,
        extra={k: v for k, v in ev.extra.items() if k not in ev.result},
    )
    summary.update(ev.after)
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != Path(ctx.run_dir).resolve():  # the run keeps its own marker
        mark_output(out, "evaluation")
    card = write_model_card(summary, ctx.run_dir, out / "model_card.md")
    cases = summary.pop("cases")
    summary["model_card"] = {"file": "model_card.md", "limitations": card["limitations"]}
    summary["cases"] = cases  # per-case records stay last
    write_json(out / "summary.json", summary)
    atomic_write_text(out / "predictions.csv", ev.predictions.to_csv(index=False))
    figures = dict(ev.figures)
    history = ctx.run_dir / "history.csv"
    if history.is_file():
        figures["Training history"] = plot_history(pd.read_csv(history), out / "figures" / "history.png")
    render_report(
        summary,
        out / "report.html",
        figures=figures,
        config=read_yaml(ctx.run_dir / "config.yaml"),
        data_summary=ev.data_summary,
        skipped=ev.skipped,
        title=f"medlens report: {Path(ctx.run).name}",
        card=card,
    )
    return summary


def read_yaml(path: Path) -> dict | None:
    """A YAML file's content, or None when there is no such file."""
    return read_run_yaml(path) if path.is_file() else None
