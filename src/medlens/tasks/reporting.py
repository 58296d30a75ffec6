"""Report pieces the tasks' ``report_section`` hooks build (report.html renders them; numbers come only from
summary.json)."""

from __future__ import annotations

from typing import Any

#: How many worst cases (or patients) a report lists.
N_WORST = 20


def fmt(value: Any, digits: int = 3) -> str:
    """A number for display: floats rounded, null as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def localisation_section(summary: dict[str, Any], table: dict[str, Any]) -> dict[str, Any]:
    """Segmentation/detection extras: the empty-mask rule, counts, the gate pipeline and ``table``."""
    rule = summary.get("empty_mask_rule") or summary.get("missing_box_rule") or ""
    facts = {**(summary.get("counts") or {}), **(summary.get("pipeline") or {})}
    for key in ("n_patients", "cases_without_box", "inference_seconds_per_case"):
        if summary.get(key) is not None:
            facts[key] = summary[key]
    return {"rule": rule, "table": table, "facts": [(k.replace("_", " "), fmt(v)) for k, v in facts.items()]}


def worst_patients(summary: dict[str, Any], k: int = N_WORST) -> dict[str, Any]:
    """The ``k`` patients with the lowest Dice of their stacked slices."""
    rows = sorted(summary["per_patient"], key=lambda r: r.get("dice", 0))[:k]
    return {
        "title": "Worst patients",
        "columns": ["Patient", "Dice (stacked slices)", "Cases"],
        "rows": [[r["patient_id"], fmt(r.get("dice")), fmt(r.get("n_cases"))] for r in rows],
    }


def worst_cases_by_iou(summary: dict[str, Any], k: int = N_WORST) -> dict[str, Any]:
    """The ``k`` cases with the lowest IoU, with their true and predicted boxes."""
    rows = sorted(summary.get("cases") or [], key=lambda c: c.get("iou", 0))[:k]
    return {
        "title": "Worst cases",
        "columns": ["Case", "Patient", "IoU", "True box", "Predicted box"],
        "rows": [
            [
                c["case_id"],
                c.get("patient_id", ""),
                fmt(c.get("iou")),
                str(c.get("target")),
                str(c.get("prediction")),
            ]
            for c in rows
        ],
    }
