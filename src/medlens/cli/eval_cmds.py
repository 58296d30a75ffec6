"""Evaluation commands: ``evaluate``, ``calibrate``, ``compare``."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.cli.app import MAX_MB, QUIET, _console, app
from medlens.cli.printing import _entry, _print_skipped, _print_summary
from medlens.utils.files import check_output_path


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="Run directory from `medlens train`."),
    data: Path | None = typer.Option(
        None, help="Evaluate on this labelled source instead of the run's own held-out split."
    ),
    split: str | None = typer.Option(
        None, help="train, val or test (default: test if present, else val; with --data: all of it)."
    ),
    output: Path | None = typer.Option(None, "-o", "--output", help="Output folder."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for 95% CIs."),
    gate: Path | None = typer.Option(
        None,
        help="Segmentation runs: a classification run that decides "
        "per slice whether to segment (two-stage pipeline).",
    ),
    negative_class: str | None = typer.Option(
        None, help="The gate's 'nothing to segment' class (default: found by name, e.g. notumor)."
    ),
    gate_threshold: float = typer.Option(0.5, help="Segment when 1 - p(negative) reaches this."),
    positive: str | None = typer.Option(
        None,
        help="Classification: the positive class of the operating-point table and reader sensitivities "
        "(default: the second class of a binary task, every class one-vs-rest otherwise).",
        rich_help_panel="Clinical evaluation",
    ),
    threshold: float | None = typer.Option(
        None,
        help="Classification: set the run's operating point (probability of --positive at or above it "
        "counts positive); stored in the run and used by `medlens predict`.",
        rich_help_panel="Clinical evaluation",
    ),
    cohorts: str | None = typer.Option(
        None,
        help="Per-cohort metrics and a fairness audit by these columns of the manifest or --metadata, "
        "e.g. 'gender,age:<40,40-60,>60' (numeric columns without bins are split at tertiles).",
        rich_help_panel="Clinical evaluation",
    ),
    metadata: Path | None = typer.Option(
        None,
        help="CSV of per-patient columns joined on patient_id (or a 'Patient' column); "
        "a kaggle_3m folder's own data.csv is joined automatically.",
        rich_help_panel="Clinical evaluation",
    ),
    min_cell: int = typer.Option(
        10,
        help="Censor cohorts with fewer patients than this (cases, when each case is its own patient).",
        rich_help_panel="Clinical evaluation",
    ),
    reference: str | None = typer.Option(
        None,
        help="Reference group of the fairness ratios (default: each column's largest group).",
        rich_help_panel="Clinical evaluation",
    ),
    readers: Path | None = typer.Option(
        None,
        help="Classification: CSV with case_id, reader and label (or probability) per read: "
        "readers' sensitivity/specificity and kappas against the model and each other.",
        rich_help_panel="Clinical evaluation",
    ),
    patient_agg: str = typer.Option(
        "max",
        help="Patient-level metrics (patients with several cases): max or mean of their cases' "
        "probabilities.",
        rich_help_panel="Clinical evaluation",
    ),
    max_image_mb: float | None = MAX_MB,
    quiet: bool = QUIET,
) -> None:
    """Write summary.json, predictions.csv, figures, model_card.md and a self-contained report.html:
    metrics with CIs, calibration, operating points, and on request cohorts, fairness and readers."""
    from medlens.evaluation.evaluate import evaluate as do_evaluate

    gate_obj = None
    if gate is not None:
        from medlens.tasks.gate import load_gate

        gate_obj = load_gate(gate, negative_class, gate_threshold)
    s = do_evaluate(
        run_dir,
        data,
        split=split,
        out=output,
        n_bootstrap=bootstrap,
        progress=not quiet,
        gate=gate_obj,
        max_image_mb=max_image_mb,
        positive=positive,
        threshold=threshold,
        cohorts=cohorts,
        metadata=metadata,
        min_cell=min_cell,
        reference=reference,
        readers=readers,
        patient_agg=patient_agg,
    )
    out = Path(s["output_dir"])  # the folder evaluate chose, never rebuilt here
    _print_skipped(s.get("skipped") or [], int(s.get("n_cases") or 0), Path(out) / "summary.json")
    _print_summary(Path(out) / "summary.json")
    dd = s.get("metrics_deduplicated")
    if dd and dd.get("check") == "not run":
        typer.secho(f"  warning: {dd['warning']}", fg="yellow", err=True)
    elif dd:
        shown = "; ".join(
            f"{k} {_entry(v)}" for k, v in list(dd["metrics"].items())[:3] if v.get("value") is not None
        )
        _console().print(
            f"  without copies of the training data ({dd['n_cases']} of {s.get('n_cases')} cases; "
            f"{dd['n_exact']} exact and {dd['n_near']} near copies left out): {shown or dd.get('note', '')}",
            highlight=False,
            soft_wrap=True,
        )
        if dd.get("warning"):
            typer.secho(f"  warning: {dd['warning']}", fg="yellow", err=True)
    if s.get("calibrated"):
        c, b, a = s["calibrated"], s["calibration_change"]["before"], s["calibration_change"]["after"]
        _console().print(
            f"  calibrated (temperature T = {c['T']:.3f}, fitted on {c['fit_on']}): ECE {b['ece']:.4f} -> "
            f"{a['ece']:.4f}, Brier {b['brier']:.4f} -> {a['brier']:.4f}"
            + (" [in-sample: this is the split T was fitted on]" if c["fit_on"] == s.get("split") else "")
        )
    flags = (s.get("cohorts") or {}).get("flags") or []
    if flags:
        _console().print(f"  fairness: {len(flags)} metric ratio(s) outside 0.80-1.25 (see the report)")
    if s.get("pipeline"):
        p = s["pipeline"]
        _console().print(
            f"  gate: {p['slices_segmented']} slices segmented, {p['slices_gated_out']} gated out; "
            f"false-positive slices {p['false_positive_slices']} (without the gate "
            f"{p['false_positive_slices_without_gate']})"
        )


@app.command()
def calibrate(
    run_dir: Path = typer.Argument(..., help="Classification run directory from `medlens train`."),
    split: str = typer.Option("val", help="Split of the run's manifest to fit on (never test or train)."),
    reset: bool = typer.Option(False, "--reset", help="Remove the run's calibration instead."),
    quiet: bool = QUIET,
) -> None:
    """Fit temperature scaling on the run's validation split; predict and evaluate then use calibrated
    probabilities (the predicted class never changes, only the probabilities)."""
    from medlens.evaluation.calibrate import calibrate as do_calibrate

    r = do_calibrate(run_dir, split=split, reset=reset, progress=not quiet)
    if reset:
        _console().print("calibration removed" if r["removed"] else f"{run_dir} was not calibrated")
        return
    b, a = r["before"], r["after"]
    _console().print(f"temperature T = {r['T']:.3f}, fitted on the {r['fit_on']} split ({r['n']} cases)")
    if r.get("warning"):
        typer.echo(f"warning: {r['warning']}", err=True)
    _console().print(
        f"  on {r['fit_on']} (in-sample after): ECE {b['ece']:.4f} -> {a['ece']:.4f}, "
        f"Brier {b['brier']:.4f} -> {a['brier']:.4f}, NLL {b['nll']:.4f} -> {a['nll']:.4f}"
    )
    _console().print(
        f"  stored in {Path(run_dir) / 'calibration.json'}; judge it with `medlens evaluate` on test"
    )


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    output: Path = typer.Option(Path("compare.html"), "-o", "--output", help="HTML file to write."),
) -> None:
    """Tabulate and chart several runs' summary.json side by side."""
    from medlens.evaluation.compare import compare as do_compare

    check_output_path(output, sources=list(run_dirs), kind="file", what="HTML report", marker="report")
    table = do_compare(run_dirs, output)
    _console().print(table.to_string(index=False))
    _console().print(f"wrote {output}")
