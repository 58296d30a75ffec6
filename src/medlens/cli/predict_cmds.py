"""Reading commands: ``predict``, ``explain``, ``triage``, ``mark-read``, and the prediction table."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.cli.app import MAX_MB, QUIET, _console, app
from medlens.cli.printing import _entry
from medlens.errors import MedlensError
from medlens.tasks.registry import get_task
from medlens.utils.files import check_output_path, json_text


@app.command()
def predict(
    paths: list[Path] = typer.Argument(
        ...,
        help="RUN_DIR then what to predict: image files, folders (searched recursively), DICOM files or "
        "series folders, NIfTI volumes, or a manifest CSV; with --segment only the inputs.",
    ),
    segment: Path | None = typer.Option(None, help="Segmentation run (then every argument is a file)."),
    gate: Path | None = typer.Option(
        None,
        help="Classification run that decides per image whether to segment it; negatives get an empty mask.",
    ),
    negative_class: str | None = typer.Option(
        None, help="The gate's 'nothing to segment' class (default: found by name, e.g. notumor)."
    ),
    gate_threshold: float = typer.Option(0.5, help="Segment when 1 - p(negative) reaches this."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Folder for masks, boxes and overlays (default RUN_DIR/predictions)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    no_index: bool = typer.Option(
        False, "--no-index", help="Skip the out-of-distribution check (the run's embedding index)."
    ),
    max_image_mb: float | None = MAX_MB,
) -> None:
    """Classify images, or segment them / find their box, by the run's task (masks and overlays to files);
    each result says whether the image is unlike the training data (2D runs)."""
    from medlens.pipeline.predict import predict as do_predict

    if segment is not None:
        run_dir, files = segment, list(paths)
    else:
        run_dir, files = paths[0], list(paths[1:])
    results = do_predict(
        run_dir,
        files,
        out_dir=output,
        gate=gate,
        negative_class=negative_class,
        gate_threshold=gate_threshold,
        ood=not no_index,
        max_image_mb=max_image_mb,
    )
    _print_read_notes(results)
    if as_json:
        typer.echo(json_text(results))
    elif results and all("error" in r for r in results):  # nothing to tabulate: one line per file
        for r in results:
            typer.echo(f"error: cannot read {r['path']}: {r['error']}", err=True)
    else:
        _console().print(_prediction_table(results, get_task(_run_task(run_dir))))
    if any("error" in r for r in results):
        raise typer.Exit(2)


@app.command()
def explain(
    paths: list[Path] = typer.Argument(
        None,
        help="RUN_DIR, then the inputs: image files, folders (searched recursively), DICOM files or series "
        "folders, NIfTI volumes, or a manifest CSV.",
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Folder for <stem>_explain.png and explain.json (default RUN/explanations).",
    ),
    method: str = typer.Option(
        "gradcam",
        help="Classification: gradcam, gradcampp or occlusion "
        "(several, comma-separated, with --localisation).",
    ),
    target: str | None = typer.Option(
        None, help="Classification: explain this class instead of the predicted one."
    ),
    k: int = typer.Option(5, "-k", help="Similar training cases shown per input."),
    localisation: Path | None = typer.Option(
        None,
        help="Score a classifier's maps against the lesion masks of this segmentation source, on the run's "
        "validation patients: pointing game, energy in mask, deletion AUC, with baselines.",
    ),
    no_index: bool = typer.Option(
        False, "--no-index", help="Skip similar cases and the out-of-distribution score."
    ),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples of the localisation intervals."),
    as_json: bool = typer.Option(False, "--json", help="Print explain.json instead of the rationales."),
    max_image_mb: float | None = MAX_MB,
    quiet: bool = QUIET,
) -> None:
    """Why the model answered what it did: heat-map or mask with uncertainty, calibrated probabilities, the
    alternatives, the most similar training cases, an out-of-distribution check, and a one-line rationale."""
    from medlens.explaining.run import explain as do_explain

    if not paths:
        raise MedlensError("give a run directory (and the inputs to explain, unless --localisation is given)")
    run_dir, inputs = paths[0], list(paths[1:])
    if not inputs and localisation is None:
        raise MedlensError(f"no inputs to explain; give image files or folders after {run_dir}")
    result = do_explain(
        run_dir,
        inputs,
        output,
        method=method,
        target=target,
        k=k,
        index=not no_index,
        localisation=localisation,
        n_bootstrap=bootstrap,
        progress=not quiet,
        max_image_mb=max_image_mb,
    )
    if as_json:
        typer.echo(json_text(result))
    else:
        for case in result["cases"]:
            if "error" in case:
                typer.echo(f"error: cannot read {case['input']}: {case['error']}", err=True)
            else:
                _console().print(f"{case['input']}: {case['rationale']}", highlight=False, soft_wrap=True)
        loc = result.get("localisation")
        if loc:
            for m, block in (loc.get("by_method") or {loc["method"]: loc}).items():
                _console().print(
                    f"localisation ({m}, {loc['n_slices']} slices of {loc['n_patients']} patients): "
                    f"pointing game {_entry(block['pointing_game'])}; "
                    f"centre {_entry(block['baseline_centre'])}; "
                    f"random point {_entry(block['baseline_random'])}; "
                    f"energy in mask {_entry(block['energy_in_mask'])}"
                    + (
                        f"; deletion AUC {_entry(block['deletion_auc'])}" if block.get("deletion_auc") else ""
                    ),
                    highlight=False,
                    soft_wrap=True,
                )
        out = output or run_dir / "explanations"
        _console().print(f"explain.json and pictures in {out}", highlight=False)
    if any("error" in c for c in result["cases"]):
        raise typer.Exit(2)


@app.command()
def triage(
    paths: list[Path] = typer.Argument(
        None,
        help="RUN_DIR, then the day's studies: image files, folders (searched recursively), DICOM files or "
        "series folders, NIfTI volumes, or a manifest CSV whose columns (patient_id, study_time, "
        "referral_priority, ...) are study metadata.",
    ),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        help="Worklist folder (worklist.csv/.json/.html; read status kept across runs).",
    ),
    history: Path | None = typer.Option(
        None,
        help="CSV, one row per patient: patient_id, age, sex, prior_positive (date), referral_priority "
        "(stat/urgent/routine) and free columns. Without it DICOM headers give age, sex and study date.",
    ),
    config: Path | None = typer.Option(
        None, help="Triage YAML: urgent_classes, weights, referral_levels, thresholds (see docs/triage.md)."
    ),
    urgent: str | None = typer.Option(
        None, help="Classification: comma-separated urgent classes (weight 1 each), replacing the config's."
    ),
    split: str | None = typer.Option(None, help="With a manifest input: keep only the rows of this split."),
    now: str | None = typer.Option(None, help="Measure waits to this ISO 8601 time (default: now)."),
    no_explain: bool = typer.Option(False, "--no-explain", help="Skip the explanation picture per study."),
    evaluate: bool = typer.Option(
        False,
        "--evaluate",
        help="Simulate the day from the manifest's ground truth: time to read the urgent studies under the "
        "worklist order against first-in-first-out, with CIs, and the ranking AUC.",
    ),
    read_every: float = typer.Option(5.0, help="Simulation: minutes one read takes."),
    arrive_every: float = typer.Option(
        0.0, help="Simulation: minutes between arrivals (0: every study is there at the start)."
    ),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples of the simulation's intervals."),
    as_json: bool = typer.Option(False, "--json", help="Print the worklist as JSON instead of a table."),
    top: int = typer.Option(20, help="Rows shown in the terminal (all are written)."),
    max_image_mb: float | None = MAX_MB,
    quiet: bool = QUIET,
) -> None:
    """Rank the day's studies by the model's calibrated risk, out-of-distribution review, patient history and
    waiting time; every study stays on the list, an unreadable one first."""
    from medlens.triaging.run import triage as do_triage

    if not paths or len(paths) < 2:
        raise MedlensError(
            "give a run directory and the studies to triage, e.g. medlens triage RUN scans/ -o wl"
        )
    run_dir, inputs = paths[0], list(paths[1:])
    check_output_path(output, sources=inputs, what="worklist folder", marker="worklist", run=run_dir)
    result = do_triage(
        run_dir,
        inputs,
        output,
        history=history,
        config=config,
        urgent=[c.strip() for c in urgent.split(",") if c.strip()] if urgent else None,
        split=split,
        now=now,
        explain=not no_explain,
        evaluate=evaluate,
        read_every=read_every,
        arrive_every=arrive_every,
        n_bootstrap=bootstrap,
        progress=not quiet,
        max_image_mb=max_image_mb,
    )
    for line in result.get("warnings") or []:  # what was given but not used: never silently
        _console(stderr=True).print(f"warning: {line}", style="yellow", highlight=False, markup=False)
    if as_json:
        typer.echo(json_text(result, default=str))
        return
    from rich.table import Table

    table = Table("rank", "priority", "input", "reason")
    for row in result["rows"][: max(0, top)]:
        priority = row["priority"] if row["unreadable"] else f"{row['priority']:.2f}"
        table.add_row(str(row["rank"]), priority, row["input"], row["reason"])
    console = _console()
    console.print(table)
    if result["n"] > top:
        console.print(f"... {result['n'] - top} more rows in {result['files']['csv']}", highlight=False)
    if result["n_unreadable"]:
        console.print(
            f"{result['n_unreadable']} unreadable stud{'y' if result['n_unreadable'] == 1 else 'ies'} kept "
            "at the top of the list: read them first",
            highlight=False,
        )
    ev = result.get("evaluation")
    if ev:
        if ev.get("n_urgent"):
            console.print(
                f"simulated day ({ev['n']} studies, {ev['n_urgent']} urgent: {ev['urgent']}; one read every "
                f"{ev['read_every_minutes']:g} min): urgent median wait "
                f"{_entry(ev['medlens']['median'])} min with medlens vs "
                f"{_entry(ev['fifo']['median'])} min first-in-first-out; mean "
                f"{_entry(ev['medlens']['mean'])} vs {_entry(ev['fifo']['mean'])}; ranking AUC "
                + (f"{ev['auc']:.3f}" if ev.get("auc") is not None else "n/a"),
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(
                "simulated day: no urgent study in the ground truth; nothing to compare", highlight=False
            )
    console.print(f"worklist in {output} (worklist.html, worklist.csv, worklist.json)", highlight=False)


@app.command("mark-read")
def mark_read(
    worklist: Path = typer.Argument(..., help="Worklist folder written by medlens triage."),
    study: str = typer.Argument(..., help="The study id (column 'study' of worklist.csv)."),
    reader: str = typer.Option(..., help="Who read it."),
    finding: str | None = typer.Option(None, help="The reader's finding, kept with the status."),
) -> None:
    """Mark one study of a worklist as read (kept when the worklist is rebuilt with new studies)."""
    from medlens.triaging.worklist import mark_read as do_mark_read

    entry = do_mark_read(worklist, study, reader, finding)
    line = f"{study}: read by {entry['read_by']} at {entry['read_at']}"
    others = [r for r in entry.get("reads") or [] if r.get("reader") != entry["read_by"]]
    if others:  # a second opinion: say whose reads it joins (every read is kept)
        line += "; already read by " + ", ".join(
            f"{r['reader']} at {r['read_at']}" + (f" (finding: {r['finding']})" if r.get("finding") else "")
            for r in others
        )
    _console().print(line, highlight=False, markup=False, soft_wrap=True)


def _prediction_table(results: list, task):
    """The ``medlens predict`` table: the task's columns and rows, unreadable files in red, and the
    out-of-distribution flag when the run has one."""
    from rich.markup import escape
    from rich.table import Table

    ood = any("ood" in r for r in results)
    table = Table("file", *task.prediction_columns, *(["OOD"] if ood else []))
    blank = [""] * max(0, len(task.prediction_columns) - 2)
    for r in results:
        if "error" in r:
            row = [escape(r["path"]), "[red]unreadable[/]", *blank, escape(r["error"])]
        else:
            row = [escape(r["path"]), *task.prediction_row(r)]
        if ood:
            flag = r.get("ood")
            row.append("" if not flag else f"[red]yes[/] ({flag['score']:.3f})" if flag["flag"] else "no")
        table.add_row(*row)
    return table


def _print_read_notes(results: list) -> None:
    """Name the files read with a caveat (frame 1 of a multi-frame DICOM ...) on stderr, one line each, and
    why there is no out-of-distribution flag when the run's index could not be had."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)
    for r in results:
        for note in r.get("read_notes") or []:
            console.print(escape(f"note: {r['path']}: {note}"), style="yellow", soft_wrap=True)
    missing = {r["ood_note"] for r in results if str(r.get("ood_note", "")).startswith("no out-of")}
    for note in sorted(missing):  # the index could not be had: say so once, not per row
        console.print(escape(f"note: {note}"), style="yellow", soft_wrap=True)


def _run_task(run_dir: Path) -> str:
    """The task a run was trained for (train.json; runs from before the field existed classify)."""
    from medlens.models.run_files import read_run_json  # deferred: the CLI starts without torch

    return str(read_run_json(Path(run_dir) / "train.json").get("task") or "classification")
