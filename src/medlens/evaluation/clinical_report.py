"""Display rows of the clinical sections of report.html (calibration, operating points, DeLong AUC, cohorts
and fairness, readers vs model, patient level, model card), built from summary.json alone."""

from __future__ import annotations

from typing import Any

from medlens.tasks.reporting import fmt

#: Thresholds of the operating-point table shown in the report (summary.json holds every 0.05 step).
REPORT_THRESHOLDS = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
CALIBRATION_LABELS = {
    "ece": "ECE (10 equal-width bins)",
    "ece_equal_mass": "ECE (10 equal-mass bins)",
    "classwise_ece": "Classwise ECE",
    "brier": "Brier score",
    "nll": "Negative log-likelihood",
}


def clinical_context(summary: dict[str, Any], card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything the ``_clinical.html.j2`` partial shows; keys are None where the summary has nothing."""
    return {
        "calibration": _calibration(summary),
        "auc": _auc(summary),
        "operating": _operating(summary),
        "chosen": summary.get("operating_point"),
        "cohorts": _cohorts(summary.get("cohorts")),
        "readers": _readers(summary.get("readers")),
        "patient": _patient(summary.get("patient_level")),
        "card": card,
    }


def proportion(entry: Any) -> str:
    """``{"value", "ci95"}`` or a number, as "0.912 [0.880, 0.937]"."""
    if isinstance(entry, dict):
        value, ci = entry.get("value"), entry.get("ci95")
        if value is None:
            return "n/a"
        return fmt(value) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci and None not in ci else "")
    return "n/a" if entry is None else fmt(entry)


def _calibration(summary: dict[str, Any]) -> dict[str, Any] | None:
    cal = summary.get("calibration")
    if not cal:
        return None
    change = summary.get("calibration_change") or {}
    rows = []
    for key, label in CALIBRATION_LABELS.items():
        if cal.get(key) is None:
            continue
        row = {"label": label, "value": fmt(cal[key])}
        if change:
            row["before"] = fmt(change["before"].get(key))
            row["after"] = fmt(change["after"].get(key))
        rows.append(row)
    return {
        "rows": rows,
        "flag": summary.get("calibrated"),
        "has_change": bool(change),
        "note": cal.get("ci_note"),
        "unit": cal.get("unit"),
        "brier_definition": cal.get("brier_definition"),
    }


def _auc(summary: dict[str, Any]) -> list[dict[str, str]]:
    delong = summary.get("auc_delong") or {}
    boot = (summary.get("metrics") or {}).get("auc") or {}
    rows = []
    for cls, d in delong.items():
        rows.append(
            {
                "class": cls,
                "value": fmt(d.get("value")),
                "delong": _ci(d.get("ci95")),
                "bootstrap": _ci(boot.get("ci95")) if len(delong) == 1 else "",
                "note": d.get("note", ""),
            }
        )
    return rows


def _operating(summary: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for r in summary.get("operating_points") or []:
        if r.get("target") is None and round(float(r["threshold"]), 2) not in REPORT_THRESHOLDS:
            continue
        rows.append(
            {
                "class": r["class"],
                "threshold": f"{r['threshold']:.3f}",
                "target": r.get("target") or "",
                **{
                    k: proportion(r.get(k)) for k in ("sensitivity", "specificity", "ppv", "npv", "flag_rate")
                },
                **{
                    k: "n/a" if r.get(k) is None else fmt(r[k])
                    for k in ("f1", "lr_plus", "lr_minus", "net_benefit")
                },
            }
        )
    return rows


def _cohorts(block: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    if not block:
        return None
    tables = []
    for name, col in (block.get("columns") or {}).items():
        groups = col.get("groups") or []
        metrics = list(dict.fromkeys(m for g in groups for m in (g.get("metrics") or {})))
        rows = []
        for g in groups:
            cells = []
            for m in metrics:
                entry = (g.get("metrics") or {}).get(m)
                ratio = (g.get("ratio") or {}).get(m)
                cells.append(
                    {
                        "text": proportion(entry) if entry else "",
                        "ratio": "" if ratio is None else f"×{ratio:.2f}",
                        "level": (g.get("flag") or {}).get(m) or "none",
                    }
                )
            rows.append(
                {
                    "name": g["name"],
                    "n": g.get("n"),
                    "n_patients": g.get("n_patients", ""),
                    "prevalence": fmt(g.get("prevalence")),
                    "censored": g.get("censored"),
                    "reference": g["name"] == col.get("reference"),
                    "cells": cells,
                }
            )
        tables.append({"name": name, "column": col.get("column", name), "metrics": metrics, "rows": rows})
    return tables


def _readers(study: dict[str, Any] | None) -> dict[str, Any] | None:
    if not study:
        return None
    classes = list(dict.fromkeys(c for r in study.get("per_reader") or [] for c in r.get("per_class") or {}))
    rows = []
    for r in [
        *(study.get("per_reader") or []),
        {"reader": "model", **(study.get("model_on_read_cases") or {})},
    ]:
        rows.append(
            {
                "reader": r.get("reader", ""),
                "n": r.get("n", ""),
                "accuracy": proportion(r.get("accuracy")),
                "per_class": [
                    (
                        proportion(((r.get("per_class") or {}).get(c) or {}).get("sensitivity")),
                        proportion(((r.get("per_class") or {}).get(c) or {}).get("specificity")),
                    )
                    for c in classes
                ],
                "kappa": proportion((r.get("kappa_vs_model") or {}).get("value"))
                if r.get("reader") != "model" or "kappa_vs_model" in r
                else "",
            }
        )
    return {
        "classes": classes,
        "rows": rows,
        "pairs": study.get("kappa_pairs") or [],
        "fleiss": study.get("fleiss_kappa"),
        "majority": study.get("majority_vote"),
        "without": study.get("cases_without_reader", 0),
        "n_cases": study.get("n_cases"),
        "fmt": fmt,
    }


def _patient(block: dict[str, Any] | None) -> dict[str, Any] | None:
    if not block:
        return None
    rows = [{"name": name, "value": proportion(e)} for name, e in (block.get("metrics") or {}).items()]
    return {"rows": rows, "rule": block.get("rule"), "n": block.get("n_patients")}


def _ci(ci: Any) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci and None not in ci else "—"
