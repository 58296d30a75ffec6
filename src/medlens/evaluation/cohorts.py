"""Cohorts and a fairness audit: how a model's metrics differ between groups of cases, for any task.

A cohort column (``gender``, ``age``, ``site``, ...) splits the cases into groups; every group is scored by a
caller-supplied function (the task's own metrics and confidence intervals, so this module knows nothing about
the task), and each metric is compared with the same metric in a reference group as a ratio.

The audit follows seismometer's fairness table (``src/seismometer/table/fairness.py`` in
epic-open-source/seismometer: ``fairness_table`` and ``FairnessIcons.get_fairness_icon``):

- the reference group of a column is its largest group (here: the largest *uncensored* group, preferring a
  real value over ``missing``), and every metric is divided by the reference group's value;
- groups with fewer than ``min_cell`` patients (seismometer's ``censor_threshold``, 10; patients are the
  independent units: 300 slices of 3 patients are 3 observations, not 300) are censored: their
  metrics and ratios are hidden;
- a ratio is flagged in both directions, within a band that is multiplicatively symmetric around 1.

The bands are seismometer's, for its fairness limit ``L`` (``tolerance``, default 0.25, seismometer's
``fairness_ratio`` default): ``"ok"`` when ``1 / (1 + L) <= ratio <= 1 + L`` (0.8-1.25); ``"critical"`` beyond
twice the limit, ``ratio > 1 + 2L`` or ``ratio < 1 / (1 + 2L)`` (above 1.5 or below 0.667); ``"flag"``
between.

Cohort syntax (:func:`parse_cohorts`): ``gender,age:<40,40-60,>60`` - comma-separated column names; a name
followed by ``:`` starts a list of numeric bins, and the tokens after it that look like bins belong to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from medlens.errors import MedlensError
from medlens.evaluation.cohort_groups import (
    _groups,
    assign_groups,
    attach_metadata,
    load_metadata,
    resolve_column,
)
from medlens.evaluation.cohort_spec import (
    MAX_CATEGORICAL_NUMBERS,
    MISSING,
    OTHER,
    SYNTAX,
    Bin,
    CohortSpec,
    parse_cohorts,
)

__all__ = [
    "MAX_CATEGORICAL_NUMBERS",
    "MISSING",
    "OTHER",
    "SYNTAX",
    "Bin",
    "CohortSpec",
    "assign_groups",
    "attach_metadata",
    "cohort_analysis",
    "flag_level",
    "load_metadata",
    "parse_cohorts",
    "resolve_column",
]


# -- the audit ----------------------------------------------------------------------------------------------
def flag_level(ratio: float | None, tolerance: float = 0.25) -> str | None:
    """``"ok"``, ``"flag"`` or ``"critical"`` for a ratio to the reference (None for None or NaN).

    Seismometer's bands for the limit ``L = tolerance``: ``ok`` when ``1 / (1 + L) <= ratio <= 1 + L``;
    ``critical`` when ``ratio > 1 + 2L`` or ``ratio < 1 / (1 + 2L)``; ``flag`` between.
    """
    if ratio is None or not math.isfinite(ratio):
        return None
    limit = float(tolerance)
    if 1 / (1 + limit) <= ratio <= 1 + limit:
        return "ok"
    if ratio > 1 + 2 * limit or ratio < 1 / (1 + 2 * limit):
        return "critical"
    return "flag"


def cohort_analysis(
    table: pd.DataFrame,
    specs: Sequence[CohortSpec] | str,
    score: Callable[[np.ndarray], dict[str, Any]],
    *,
    min_cell: int = 10,
    reference: str | None = None,
    tolerance: float = 0.25,
    higher_is_better: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Score every cohort group and compare it with the column's reference group (a fairness audit).

    Args:
        table: one row per case: ``case_id``, ``patient_id`` and the cohort columns (see
            :func:`attach_metadata`).
        specs: the cohort columns (:func:`parse_cohorts`' result, or its text).
        score: given the integer row positions of one group, returns ``{metric: {"value": float | None,
            "ci95": [lo, hi] | None}, ...}``, optionally with ``"prevalence": float`` and
            ``"n_patients": int``. It is not called for censored groups.
        min_cell: groups with fewer patients (cases, when every case is its own patient) are censored:
            ``"censored": true``, no metrics, prevalence or
            ratios, no flags; their ``n`` (and ``n_patients``) are still shown.
        reference: a group name to compare against (e.g. ``"F"``) instead of the largest group. With several
            columns it applies where the group exists and the others fall back to their largest group.
        tolerance: the limit ``L`` of the flag bands (:func:`flag_level`), between 0 and 1.
        higher_is_better: per metric, whether a higher value is better; it only fills the ``direction`` of the
            flags (``"better"``/``"worse"`` instead of ``"higher"``/``"lower"``). Both directions are flagged.

    Returns:
        JSON-ready ``{"min_cell", "tolerance", "bands": {"ok": [lo, hi], "critical_below", "critical_above"},
        "columns": {display name: {"column", "reference", "bins", "groups": [{"name", "n", "n_patients",
        "prevalence", "censored", "metrics": {m: {"value", "ci95"}}, "ratio": {m: float | None},
        "flag": {m: "ok" | "flag" | "critical" | None}}]}}, "flags": [{"column", "group", "metric", "ratio",
        "level", "direction"}]}``. Groups come in bin order, or by descending n for categories, ``other`` and
        ``missing`` last. A ratio is the group's value over the reference's (None when either is None or not
        finite, or the reference is 0 or either is negative); the reference group has ratio 1.0, "ok".

    Raises:
        MedlensError: an unknown column or reference group, bad tolerance or min_cell.
    """
    if isinstance(specs, str):
        specs = parse_cohorts(specs)
    if not 0 < float(tolerance) < 1:
        raise MedlensError(f"tolerance must be between 0 and 1 (e.g. 0.25 for 0.8-1.25), got {tolerance}")
    if int(min_cell) < 1:
        raise MedlensError(f"min_cell must be at least 1, got {min_cell}")
    min_cell, tolerance = int(min_cell), float(tolerance)
    better = higher_is_better or {}
    table = table.reset_index(drop=True)
    patients = table["patient_id"].astype(str).to_numpy() if "patient_id" in table.columns else None
    columns: dict[str, Any] = {}
    seen_groups: dict[str, list[str]] = {}
    for spec in specs:
        labels, bins, order, column = _groups(table, spec, 3)
        codes = labels.to_numpy()
        groups = []
        for name in order:
            idx = np.flatnonzero(codes == name)
            groups.append(_score_group(name, idx, score, min_cell, patients))
        seen_groups[spec.column] = order
        ref = _reference(groups, reference, spec.column, min_cell)
        _add_ratios(groups, ref, tolerance)
        columns[spec.column] = {
            "column": column,
            "reference": ref["name"] if ref else None,
            "bins": [b.to_json() for b in bins] if bins else None,
            "groups": groups,
        }
    if reference is not None and not any(reference in g for g in seen_groups.values()):
        listing = "; ".join(f"{c}: {g}" for c, g in seen_groups.items())
        raise MedlensError(
            f"reference group {reference!r} is in no cohort column (groups: {listing}); pick one of those"
        )
    flags = [
        {
            "column": display,
            "group": g["name"],
            "metric": m,
            "ratio": g["ratio"][m],
            "level": level,
            "direction": _direction(g["ratio"][m], better.get(m)),
        }
        for display, col in columns.items()
        for g in col["groups"]
        for m, level in g["flag"].items()
        if level in ("flag", "critical")
    ]
    return {
        "min_cell": min_cell,
        "tolerance": tolerance,
        "bands": {
            "ok": [1 / (1 + tolerance), 1 + tolerance],
            "critical_below": 1 / (1 + 2 * tolerance),
            "critical_above": 1 + 2 * tolerance,
        },
        "columns": columns,
        "flags": flags,
    }


def _score_group(name, idx, score, min_cell, patients) -> dict[str, Any]:
    n = len(idx)
    group: dict[str, Any] = {
        "name": str(name),
        "n": n,
        "n_patients": len(np.unique(patients[idx])) if patients is not None else n,
        "prevalence": None,
        "censored": False,
        "metrics": {},
        "ratio": {},
        "flag": {},
    }
    group["censored"] = group["n_patients"] < min_cell
    if group["censored"]:
        return group
    result = dict(score(idx) or {})
    if result.get("n_patients") is not None:
        group["n_patients"] = int(result.pop("n_patients"))
    group["prevalence"] = _num(result.pop("prevalence", None))
    for metric, entry in result.items():
        if isinstance(entry, dict) and "value" in entry:
            ci = entry.get("ci95")
            group["metrics"][str(metric)] = {
                "value": _num(entry["value"]),
                "ci95": [_num(ci[0]), _num(ci[1])] if ci is not None else None,
            }
    return group


def _reference(groups: list[dict], wanted: str | None, display: str, min_cell: int) -> dict | None:
    names = [g["name"] for g in groups]
    if wanted is not None and wanted in names:
        ref = groups[names.index(wanted)]
        if ref["censored"]:
            raise MedlensError(
                f"reference group {wanted!r} of cohort {display!r} has {ref['n_patients']} patients, fewer "
                f"than min_cell ({min_cell}); pick another reference or lower min_cell"
            )
        return ref
    open_groups = [g for g in groups if not g["censored"]]
    real = [g for g in open_groups if g["name"] not in (MISSING, OTHER)] or open_groups
    return max(real, key=lambda g: g["n"]) if real else None  # max keeps the first of equal n


def _add_ratios(groups: list[dict], ref: dict | None, tolerance: float) -> None:
    if ref is None:
        return
    for group in groups:
        if group["censored"]:
            continue
        for metric, entry in group["metrics"].items():
            base = ref["metrics"].get(metric, {}).get("value")
            value = entry["value"]
            if group is ref:
                ratio = 1.0 if value is not None else None
            elif value is None or base is None or base <= 0 or value < 0:
                ratio = None
            else:
                ratio = float(value / base)
            group["ratio"][metric] = ratio
            group["flag"][metric] = flag_level(ratio, tolerance)


def _direction(ratio: float, higher_better: bool | None) -> str:
    higher = ratio > 1
    if higher_better is None:
        return "higher" if higher else "lower"
    return "better" if higher == bool(higher_better) else "worse"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
