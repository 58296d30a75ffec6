"""The model card: what a reader of a clinical AI paper checks (items of the CLAIM checklist), from the run
and its summary.json alone, written as ``model_card.md`` beside the summary and as a report section.

Nothing here is prose the data did not produce: each item is a fact of the run (config.yaml, train.json,
manifest.csv) or of the evaluation (summary.json), and the limitations are rules over those facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from medlens.models.run_files import read_run_json, read_run_yaml
from medlens.utils.files import atomic_write_text

#: A 95 % interval wider than this (on a 0–1 metric) counts as wide.
WIDE_CI = 0.10
#: Fewer evaluated cases than this counts as a small test set.
SMALL_N = 100


def model_card(summary: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """The card's items: ``{"items": [(title, text)], "limitations": [str]}``."""
    run_dir = Path(run_dir)
    cfg = _read_yaml(run_dir / "config.yaml")
    train = _read_json(run_dir / "train.json")
    split = summary.get("split", "?")
    items: list[tuple[str, str]] = [
        ("Intended use", cfg.get("intended_use") or "not stated (set intended_use in the training config)"),
        ("Data source", str(summary.get("data", "?"))),
        ("Cases per split", _counts(train)),
        ("How the splits were made", _split_method(run_dir, cfg)),
        ("Leakage check", _leakage(summary, cfg, train)),
        ("Preprocessing", _preprocessing(train)),
        ("Model", _model(summary, cfg)),
        ("Training budget", _budget(cfg, train)),
        ("Metrics", _metrics(summary)),
        ("Calibration", _calibration(summary)),
        ("Operating point", _operating_point(summary)),
        ("Cohorts and fairness", _cohorts(summary)),
    ]
    return {"split": split, "items": items, "limitations": limitations(summary, cfg, train)}


def write_model_card(summary: dict[str, Any], run_dir: str | Path, path: str | Path) -> dict[str, Any]:
    """Build the card and write it as Markdown to ``path`` (atomically); returns the card."""
    card = model_card(summary, run_dir)
    lines = [f"# Model card: {Path(str(summary.get('run', run_dir))).name}", ""]
    lines += [f"Evaluated on the **{card['split']}** split ({summary.get('n_cases', '?')} cases).", ""]
    for title, text in card["items"]:
        lines += [f"## {title}", "", text, ""]
    lines += ["## Known limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]] or ["- none found by the automatic checks"]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return card


def limitations(summary: dict[str, Any], cfg: dict[str, Any], train: dict[str, Any]) -> list[str]:
    """Known limitations, each from a rule: small n, wide CIs, fairness flags, un-audited data, validation
    used for model selection, in-sample calibration."""
    out = []
    n = int(summary.get("n_cases") or 0)
    if n < SMALL_N:
        out.append(f"small evaluation set: {n} cases; every figure is uncertain")
    wide = [
        f"{name} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]"
        for name, e in (summary.get("metrics") or {}).items()
        if isinstance(e, dict)
        and e.get("ci95")
        and None not in e["ci95"]
        and e["ci95"][1] - e["ci95"][0] > WIDE_CI
        and name not in ("hd95",)
    ]
    if wide:
        out.append(f"wide 95 % intervals (> {WIDE_CI:g}): " + ", ".join(wide))
    flags = (summary.get("cohorts") or {}).get("flags") or []
    if flags:
        worst = sorted(flags, key=lambda f: f.get("level") != "critical")[:5]
        out.append(
            f"fairness: {len(flags)} metric ratio(s) outside the tolerance, e.g. "
            + "; ".join(
                f"{f['column']}={f['group']} {f['metric']} ratio {f['ratio']:.2f} ({f['level']})"
                for f in worst
            )
        )
    censored = [
        f"{col}={g['name']}"
        for col, block in ((summary.get("cohorts") or {}).get("columns") or {}).items()
        for g in block.get("groups", [])
        if g.get("censored")
    ]
    if censored:
        out.append(f"cohorts too small to report (censored): {', '.join(censored)}")
    if not cfg.get("audit_fix"):
        out.append(
            "training data not leakage-checked (`--audit-fix` not used): "
            "duplicates across splits can inflate results"
        )
    if summary.get("split") == "val":
        out.append(
            "these figures are on the validation split, which chose the best epoch (model selection): "
            "they are optimistic; evaluate on a held-out test split"
        )
    cal = summary.get("calibrated") or {}
    if cal and cal.get("fit_on") == summary.get("split"):
        out.append(
            f"the temperature was fitted on this {summary.get('split')} split: "
            "calibration figures are in-sample"
        )
    if summary.get("task") == "classification" and not summary.get("calibrated"):
        out.append("probabilities are not calibrated (run `medlens calibrate`)")
    if train.get("skipped"):
        out.append(f"{len(train['skipped'])} training file(s) were unreadable and skipped")
    return out


# -- items ---------------------------------------------------------------------------------------------
def _counts(train: dict[str, Any]) -> str:
    counts = train.get("n_images") or {}
    if counts:
        text = ", ".join(f"{s}: {n}" for s, n in counts.items())
        classes = train.get("class_counts") or {}
        if classes:
            text += ". Per class: " + "; ".join(
                f"{s}: " + ", ".join(f"{c} {n}" for c, n in per.items()) for s, per in classes.items()
            )
        return text
    return "not recorded in train.json"


def _split_method(run_dir: Path, cfg: dict[str, Any]) -> str:
    path = run_dir / "manifest.csv"
    if not path.is_file():
        return "unknown (no manifest.csv in the run)"
    df = pd.read_csv(path, usecols=lambda c: c in ("patient_id", "split", "case_id"), dtype=str)
    grouped = df["patient_id"].nunique() < len(df)
    shared = 0
    if grouped:
        splits = df.groupby("patient_id")["split"].nunique()
        shared = int((splits > 1).sum())
    how = (
        f"patient-level: {df['patient_id'].nunique()} patients, {shared} in more than one split"
        if grouped
        else "case-level: one case per patient id (no patient grouping in the data)"
    )
    return (
        f"{how}; validation split as given by the source, else carved stratified (share "
        f"{cfg.get('val_fraction')}, seed {cfg.get('seed', 0)}); test split untouched by training"
    )


def _leakage(summary: dict[str, Any], cfg: dict[str, Any], train: dict[str, Any]) -> str:
    if cfg.get("audit_fix"):
        return f"yes: audited and cleaned with --audit-fix ({len(train.get('audit_fix') or [])} change(s))"
    return "no: the data was not audited for duplicates and leakage before training"


def _preprocessing(train: dict[str, Any]) -> str:
    spec = train.get("spec") or {}
    if not spec:
        return "not recorded"
    size = spec.get("patch_size") or spec.get("image_size")
    return (
        f"{spec.get('spatial_dims', 2)}D, input {size} px, {spec.get('channels')} channel(s), "
        f"intensity {spec.get('intensity') or 'dataset'} standardisation"
    )


def _model(summary: dict[str, Any], cfg: dict[str, Any]) -> str:
    name = (summary.get("model") or {}).get("name") or cfg.get("model", "?")
    return (
        f"{name}; optimizer {cfg.get('optimizer')}, scheduler {cfg.get('scheduler')}, seed {cfg.get('seed')}"
    )


def _budget(cfg: dict[str, Any], train: dict[str, Any]) -> str:
    text = (
        f"{train.get('epochs_run', '?')} of {cfg.get('epochs')} epochs run "
        f"in {train.get('train_seconds', '?')} s"
        + (f" (limit {cfg['max_minutes']} min)" if cfg.get("max_minutes") else "")
    )
    if cfg.get("budget"):
        return text + (
            f". Wall-clock budget {cfg['budget']} given (--budget): the epoch count was fitted to this "
            "machine's speed, so another run of the same data and options may train a different number of "
            "epochs"
        )
    if cfg.get("max_minutes"):
        return text + ". No time budget; the --max-minutes limit stops a run that takes longer"
    return text + ". No time budget: the epoch count came from the data and the options"


def _metrics(summary: dict[str, Any]) -> str:
    parts = []
    for name, e in (summary.get("metrics") or {}).items():
        if isinstance(e, dict) and e.get("value") is not None:
            ci = e.get("ci95")
            parts.append(
                f"{name} {e['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "")
            )
    return f"on the {summary.get('split')} split: " + ", ".join(parts)


def _calibration(summary: dict[str, Any]) -> str:
    cal = summary.get("calibration") or {}
    if not cal:
        return "not measured for this task"
    text = f"ECE {cal.get('ece', float('nan')):.3f}"
    if cal.get("brier") is not None:
        text += f", Brier {cal['brier']:.3f}"
    flag = summary.get("calibrated")
    if flag:
        text += f"; temperature scaling T = {flag['T']:.3f} fitted on {flag['fit_on']}"
        change = summary.get("calibration_change")
        if change:
            text += f" (ECE {change['before']['ece']:.3f} before, {change['after']['ece']:.3f} after)"
    elif summary.get("task") == "classification":
        text += "; not recalibrated"
    if cal.get("unit"):
        text += f"; {cal['unit']}"
    return text


def _operating_point(summary: dict[str, Any]) -> str:
    op = summary.get("operating_point")
    if not op:
        return "none chosen (argmax decides; set one with `medlens evaluate RUN --threshold T`)"
    row = op.get("row") or {}
    sens = (row.get("sensitivity") or {}).get("value")
    spec = (row.get("specificity") or {}).get("value")
    return (
        f"{op['class']} when p ≥ {op['threshold']:g}: sensitivity "
        f"{'n/a' if sens is None else f'{sens:.3f}'}, specificity {'n/a' if spec is None else f'{spec:.3f}'}"
    )


def _cohorts(summary: dict[str, Any]) -> str:
    block = summary.get("cohorts")
    if not block:
        return "not analysed (`medlens evaluate RUN --cohorts COL`)"
    flags = block.get("flags") or []
    cols = ", ".join(block.get("columns") or {})
    return (
        f"by {cols}; {len(flags)} fairness flag(s) (limit {block.get('tolerance')}, "
        f"censored below n = {block.get('min_cell')})"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_run_yaml(path)


def _read_json(path: Path) -> dict[str, Any]:
    return read_run_json(path)
