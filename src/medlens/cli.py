"""The `medlens` command: a thin Typer layer over the public functions.

Heavy libraries load only when a command runs. A MedlensError (user mistake, broken input) prints one line
and exits with code 2, without a traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import typer
from typer import rich_utils
from typer.exceptions import Abort, TyperException

from medlens.errors import MedlensError
from medlens.tasks.registry import get_task
from medlens.training.config import TrainConfig
from medlens.utils.files import check_output_path, json_text
from medlens.utils.threads import apply_threads

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="medlens: ingest, audit, train, evaluate and compare medical image models.",
)

SRC_HELP = (
    "Dataset: class folders (ROOT/<class>/<img> or ROOT/<split>/<class>/<img>), a CSV (image,label), "
    "a manifest CSV, a MedMNIST .npz; for segmentation/detection image/mask pairs (kaggle_3m folders, a CSV "
    "with image,mask), NIfTI imagesTr/labelsTr folders, an MSD dataset.json or a CSV image,x0,y0,x1,y1."
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")
MAX_MB_HELP = (
    "Refuse (and skip, inside a dataset) any file whose header declares more than this many MiB once "
    "decoded, checked before decoding (default 512)."
)
MAX_MB = typer.Option(None, "--max-image-mb", help=MAX_MB_HELP)


def _console(stderr: bool = False):
    """The console of every command's output: full lines when piped (medlens.utils.console)."""
    from medlens.utils.console import console

    return console(stderr=stderr)


@app.command()
def ingest(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="Manifest CSV to write."),
    label_names: str | None = typer.Option(
        None, help="Comma-separated class names for integer labels (npz), in label order."
    ),
) -> None:
    """Scan SRC and write a manifest CSV (one row per image: case_id, patient_id, split, image, label)."""
    from medlens.data.ingest import ingest as do_ingest

    check_output_path(output, sources=[src], kind="file", what="manifest CSV", marker="manifest")
    names = [n.strip() for n in label_names.split(",")] if label_names else None
    manifest = do_ingest(src, label_names=names)
    manifest.save(output)
    counts = manifest.df.groupby(["split", "label"]).size() if manifest.has_labels else len(manifest)
    _console().print(f"[green]wrote[/] {output}: {len(manifest)} images, classes {manifest.classes}")
    _console().print(counts)
    if "left out" in manifest.source:  # images outside class folders, DICOM files that hold no image
        _console().print(f"source: {manifest.source}", markup=False, soft_wrap=True)


@app.command()
def audit(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path = typer.Option(
        Path("audit"), "-o", "--output", help="Folder for audit.json and audit.html."
    ),
    fix: Path | None = typer.Option(
        None,
        help="Write a cleaned manifest CSV here (drops unreadable files, "
        "keeps one of each exact duplicate, moves leaked groups into "
        "one split, drops label conflicts).",
    ),
    prefer: str = typer.Option("train", help="Split that leaked duplicate groups move to: train or test."),
    threshold: int | None = typer.Option(
        None, help="Near-duplicate perceptual-hash Hamming threshold (default 6 of 64 bits)."
    ),
    workers: int = typer.Option(2, help="Decoding threads."),
    mask_classes: int | None = typer.Option(
        None,
        help="Label values segmentation masks may hold: 2 "
        "for binary {0,1}/{0,255}, K for 0..K-1 (default: "
        "an MSD dataset.json's labels, else 2).",
    ),
    strict: bool = typer.Option(False, help="Exit with code 1 when anything is found."),
    max_image_mb: float | None = MAX_MB,
    quiet: bool = QUIET,
) -> None:
    """Find unreadable files, size outliers, imbalance, exact/near duplicates, train/test leakage, clusters.

    Segmentation sources are audited too: 2D image/mask pairs and NIfTI volumes (imagesTr/labelsTr folders,
    an MSD dataset.json). Volumes add a voxel-spacing and depth census with its outliers; every mask is
    checked against its image (same size, expected values) and its foreground fraction reported.
    """
    from medlens.auditing.run import audit as do_audit
    from medlens.auditing.run import print_summary

    check_output_path(output, sources=[src], what="audit folder", marker="audit")
    if fix is not None:
        check_output_path(
            fix, sources=[src], kind="file", option="--fix", what="cleaned manifest CSV", marker="manifest"
        )
    result = do_audit(
        src,
        output,
        near_threshold=threshold,
        fix=fix,
        prefer=prefer,
        workers=workers,
        progress=not quiet,
        mask_classes=mask_classes,
        max_image_mb=max_image_mb,
    )
    print_summary(result, _console())
    _console().print(f"report: {output / 'audit.html'}")
    if strict and result.findings_count:
        raise typer.Exit(1)


@app.command()
def models(pattern: str | None = typer.Argument(None, help="Glob filter, e.g. 'resnet*'.")) -> None:
    """List the registered models."""
    from rich.table import Table

    from medlens.models.registry import list_models

    table = Table("name", "task", "input", "pretrained", "description")
    for m in list_models(pattern):
        inp = f"{m.channels or 'any'} ch, {m.default_size} px"
        table.add_row(m.name, m.task, inp, "yes" if m.pretrained else "", m.description)
    _console().print(table)


@app.command()
def summary(
    model: str = typer.Argument(..., help="Model name (see `medlens models`)."),
    input_size: int = typer.Option(224, help="Input side in pixels."),
    channels: int | None = typer.Option(None, help="Input channels (default: the model's)."),
    num_classes: int = typer.Option(
        4,
        help="Number of output classes (classifiers; segmentation models "
        "are counted with 2, box detectors with 4 outputs).",
    ),
    head: str = typer.Option("linear", help="Classifier head: linear or mlp."),
    freeze_backbone: bool = typer.Option(False, help="Classifiers: count only head parameters as trainable."),
) -> None:
    """Show total / trainable parameters and multiply-adds of MODEL at one input size."""
    from medlens.models.registry import get_model_info
    from medlens.models.summary import CLI_MIN_SIDE, check_input, summarize

    info = get_model_info(model)
    outputs, options = get_task(info.task).summary_model(num_classes, head, freeze_backbone)
    in_channels = channels if channels is not None else info.channels or 1
    check_input(model, (input_size, input_size), in_channels, min_side=CLI_MIN_SIDE)  # 0 or 100000: one line
    s = summarize(
        model,
        input_size=input_size,
        in_channels=in_channels,
        num_classes=outputs,
        pretrained=False,
        **options,
    )
    c = _console()
    c.print(f"[bold]{model}[/] at {input_size}x{input_size}, {in_channels} channel(s)")
    c.print(f"  total parameters:     {s['total_params']:,}")
    c.print(f"  trainable parameters: {s['trainable_params']:,}")
    c.print(f"  multiply-adds:        {s['macs'] / 1e6:,.1f} M")


def _config_options(cls: type) -> list[tuple[Any, inspect.Parameter]]:
    """A keyword parameter holding a ``typer.Option`` for each field of the dataclass ``cls``, from the
    field's metadata: ``help``, ``option`` (names; default ``--field-name``, ``--name/--no-name`` for a bool),
    ``metavar``, ``panel``; ``cli=False`` keeps a field config-only. The default is the field's own, so
    ``--help`` shows the real one (a flag's as on or off). A list field is a comma-separated option, a
    mapping a repeatable KEY=VALUE one."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True) is False:
            continue
        kind = _field_type(hints[f.name])
        names = f.metadata.get("option") or f"--{f.name.replace('_', '-')}"
        names = (names,) if isinstance(names, str) else tuple(names)
        annotation, default, shown = kind, f.default, True
        if kind is bool:
            if not any("/" in n for n in names):
                names = (f"{names[0]}/--no-{names[0].removeprefix('--')}", *names[1:])
            if f.default is not None:  # "on", not the width of "no-freeze-backbone", at 80 columns
                shown = "on" if f.default else "off"
        elif typing.get_origin(kind) is list:
            annotation = str
            default = None if f.default is None else ",".join(map(str, f.default))
        elif typing.get_origin(kind) is dict:
            annotation, default = list[str], None
        option = typer.Option(
            default,
            *names,
            help=f.metadata["help"],
            metavar=f.metadata.get("metavar"),
            rich_help_panel=f.metadata.get("panel"),
            show_default=shown,
        )
        kw = inspect.Parameter.KEYWORD_ONLY
        out.append((f, inspect.Parameter(f.name, kw, default=option, annotation=annotation | None)))
    return out


def _field_type(hint: Any) -> Any:
    """``int | None`` → ``int``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else hint


def _with_config_options(cls: type):
    """Give a command one option per field of ``cls`` (see :func:`_config_options`), placed after its
    ``config`` parameter. The command receives ``changes``: only the options given on the command line,
    converted to field values, so an option left out never overrides the config file."""

    def decorate(func):
        fields = _config_options(cls)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.name != "changes"
        ]
        at = next(i for i, p in enumerate(own) if p.name == "config") + 1
        ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [*own[:at], *(p for _, p in fields), *own[at:], ctx]

        def command(ctx: typer.Context, **kwargs: Any) -> None:
            changes = {}
            for f, _ in fields:
                value = kwargs.pop(f.name)
                source = ctx.get_parameter_source(f.name)
                if source is not None and source.name != "DEFAULT":
                    changes[f.name] = _option_value(f, value)
            func(changes=changes, **kwargs)

        command.__name__, command.__qualname__ = func.__name__, func.__qualname__
        command.__doc__, command.__module__ = func.__doc__, func.__module__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command

    return decorate


def _option_value(f: Any, value: Any) -> Any:
    """A command-line value as the config field wants it: "96,96,32" → [96, 96, 32], KEY=VALUE → a dict."""
    option = f"--{f.name.replace('_', '-')}"
    if isinstance(f.metadata.get("option"), str):
        option = f.metadata["option"]
    kind = _field_type(typing.get_type_hints(TrainConfig)[f.name])
    if typing.get_origin(kind) is list:
        return _numbers(value, typing.get_args(kind)[0], option)
    if typing.get_origin(kind) is dict:
        return _model_args(value)
    return value


@app.command()
@_with_config_options(TrainConfig)
def train(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="Run directory to create."),
    config: Path | None = typer.Option(None, help="YAML config; the options given below override it."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from its last checkpoint."),
    overwrite: bool = typer.Option(
        False, help="Replace an existing run directory (only one medlens wrote; never the source)."
    ),
    quiet: bool = QUIET,
    changes: dict | None = None,
) -> None:
    """Train a classifier (or a segmentation / detection model) on SRC; write a run directory with
    report.html. Every option below is also a key of the --config file (with _ for -)."""
    from medlens.pipeline.steps import train as do_train

    changes = changes or {}
    cfg = TrainConfig.load(config, **changes) if config is not None else TrainConfig(**changes)
    run = do_train(src, output, cfg, overwrite=overwrite, resume=resume, progress=not quiet)
    facts = json.loads((run / "train.json").read_text())
    _print_skipped(
        facts.get("skipped") or [],
        sum((facts.get("n_images") or {}).values()),
        run / "train.json",
        facts.get("read_notes"),
    )
    _print_summary(run / "summary.json")


@app.command()
@_with_config_options(TrainConfig)
def plan(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path | None = typer.Option(None, "-o", "--output", help="Also write the plan to this JSON file."),
    config: Path | None = typer.Option(None, help="YAML config; the options given below override it."),
    probe: bool = typer.Option(
        True,
        help="Also print how long training would take on this machine (a few seconds of timing, never part "
        "of the plan); --no-probe skips it.",
    ),
    changes: dict | None = None,
) -> None:
    """Show what `medlens train SRC` would choose (input size, channels, batch, epochs, augmentation,
    validation scheme) and why, from the dataset's fingerprint and the options alone, and about how long it
    would train on this machine. Options given here are kept as given, exactly as in train."""
    from rich.markup import escape

    from medlens.training.plans import plan as make

    changes = changes or {}
    cfg = TrainConfig.load(config, **changes) if config is not None else TrainConfig(**changes)
    result = make(src, cfg, output=output, probe=probe)
    fp, c = result["fingerprint"], _console()
    size = fp.get("shape_median")
    c.print(
        f"[bold]{src}[/]: {fp['n_cases']} cases {fp['n_by_split']}, {fp.get('dims', 2)}D"
        + (f", median size {size}" if size else "")
        + (f", classes {fp['classes']} (imbalance {fp['imbalance']}x)" if fp.get("classes") else "")
        + (", grouped by patient" if fp.get("grouped_by_patient") else "")
        + (
            f"; {fp['unreadable_in_sample']} of {fp['sampled']} sampled files unreadable "
            "(training skips them)"
            if fp.get("unreadable_in_sample")
            else ""
        ),
        highlight=False,
    )
    for name, choice in result["choices"].items():
        value = "-" if choice["value"] is None else str(choice["value"])
        c.print(
            f"  [bold]--{name.replace('_', '-')} {escape(value)}[/] ({choice['source']}): "
            f"{escape(choice['reason'])}",
            highlight=False,
            soft_wrap=True,
        )
    c.print("the reasons for the values not planned (model, optimizer, schedule, ...): plans.json → defaults")
    if probe:
        from medlens.models.registry import get_model_info
        from medlens.training.plans import estimate

        guess = estimate(cfg, get_model_info(cfg.model), result)
        if guess.get("text"):
            c.print(f"training: {guess['text']} (an estimate, not part of the plan)", highlight=False)
    if output is not None:
        c.print(f"plan: {output}")


def _numbers(text: str | None, kind, option: str) -> list | None:
    """ "96,96,32" → [96, 96, 32]."""
    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise MedlensError(f"{option} needs comma-separated numbers like 96,96,32, got {text!r}") from err


def _model_args(items: list[str] | None) -> dict | None:
    """KEY=VALUE strings → a dict; VALUE is read as YAML, and "a,b,c" as a list (channels=16,32,64)."""
    if not items:
        return None
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedlensError(f"--model-arg needs KEY=VALUE, e.g. channels=16,32,64; got {item!r}")
        text = f"[{value}]" if "," in value and not value.strip().startswith("[") else value
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise MedlensError(f"--model-arg {item!r}: cannot read the value ({err})") from err
    return out


def _print_skipped(skipped: list, n_read: int, where: Path, notes: list | None = None) -> None:
    """Name the files a dataset command skipped (and those read with a caveat), on stderr."""
    from rich.markup import escape

    from medlens.io.guard import skipped_lines

    console = _console(stderr=True)
    for line in skipped_lines(skipped, n_read + len(skipped), str(where), notes=notes):
        console.print(escape(line), style=None if line.startswith(" ") else "yellow", soft_wrap=True)


def _print_summary(path: Path) -> None:
    s = json.loads(path.read_text())
    c = _console()
    final = s.get("final")
    if final and s.get("evaluated_model") == "selection":
        c.print(
            f"[bold]{s['split']}[/] split, {s['n_cases']} cases, scored with the selection model (trained "
            f"on train only); the run's model was then refit on train + val for {final['epochs']} epochs and "
            "has no held-out score here:"
        )
    else:
        c.print(f"[bold]{s['split']}[/] split, {s['n_cases']} cases:")
    for name, m in s["metrics"].items():
        if m.get("value") is not None:
            ci = m.get("ci95") or [None, None]
            ci_text = f"  (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci[0] is not None else ""
            c.print(f"  {name:18s} {m['value']:.3f}{ci_text}")
    c.print(f"report: {path.parent / 'report.html'}")


@app.command()
def curve(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for one run per fraction + curve."),
    model: str = typer.Option("cnn-small", "--model", "-m", help="Model name."),
    fractions: str = typer.Option("0.1,0.2,0.3", help="Comma-separated training fractions."),
    epochs: int | None = typer.Option(None, help="Maximum epochs per run."),
    image_size: int | None = typer.Option(None, help="Input side in pixels."),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = typer.Option(False, help="Replace existing runs."),
    quiet: bool = QUIET,
) -> None:
    """Train MODEL on growing fractions of SRC and plot validation score against fraction."""
    from medlens.pipeline.curve import learning_curve

    try:
        fr = [float(f) for f in fractions.split(",") if f.strip()]
    except ValueError as err:
        raise MedlensError(f"--fractions must be numbers like 0.1,0.2,0.3, got {fractions!r}") from err
    table = learning_curve(
        src,
        output,
        fractions=fr,
        model=model,
        epochs=epochs,
        image_size=image_size,
        seed=seed,
        overwrite=overwrite,
        progress=not quiet,
    )
    _console().print(table.to_string(index=False))
    _console().print(f"plot: {output / 'curve.png'}")


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


def _entry(entry: dict) -> str:
    ci = entry.get("ci95")
    return f"{entry['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


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


@app.command()
def serve(
    data_dir: Path = typer.Option(
        Path("medlens-data"), "--data-dir", help="Folder of the service's database, uploads and runs."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    db: str | None = typer.Option(
        None, help="Database URL (default SQLite DATA_DIR/medlens.db), e.g. postgresql://user@host/medlens."
    ),
    queue: str | None = typer.Option(None, help="Job queue URL redis://... (default Huey's SQLite queue)."),
    workers: int = typer.Option(
        1, help="Job worker processes (0: none here; run python -m medlens.serving.worker)."
    ),
    allow_path: list[Path] = typer.Option(
        [], "--allow-path", help="A folder under which datasets may be registered by path (repeatable)."
    ),
    run: list[Path] = typer.Option(
        [], "--run", help="Copy this CLI run folder into the service (repeatable; default: ./medlens-demo)."
    ),
    max_upload_mb: float = typer.Option(2048.0, help="Largest upload (a dataset zip), in MB."),
    max_image_mb: float = typer.Option(64.0, help="Largest single image or study file, in MB."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No token (refused unless the host is 127.0.0.1)."),
) -> None:
    """Web app and JSON API: upload datasets and studies, train, read reports, explanations, the worklist."""
    from medlens.serving.run import serve as do_serve
    from medlens.serving.service import ServeSettings

    if no_auth and host not in ("127.0.0.1", "localhost", "::1"):
        raise MedlensError(f"--no-auth is refused on host {host}; serve on 127.0.0.1 or keep the token")
    settings = ServeSettings(
        data_dir=data_dir,
        host=host,
        port=port,
        db_url=db,
        queue_url=queue,
        workers=workers,
        allow_paths=list(allow_path),
        max_upload_mb=max_upload_mb,
        max_image_mb=max_image_mb,
        no_auth=no_auth,
    )
    do_serve(
        settings,
        import_runs=list(run),
        echo=lambda line: _console().print(line, highlight=False, soft_wrap=True),
    )


@app.command()
def search(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path = typer.Option(
        ..., "-o", "--output", help="New folder for the trials, results and best.yaml."
    ),
    grid: str | None = typer.Option(
        None,
        help='Every combination of these values, e.g. "dropout=0,0.1 lr=1e-4,1e-3" (training options).',
    ),
    trials: int | None = typer.Option(
        None, help="Instead of --grid: N TPE trials over lr, weight_decay, dropout (+ momentum with sgd)."
    ),
    jobs: int = typer.Option(1, help="Worker processes training trials side by side."),
    budget: str | None = typer.Option(
        None, help="Total wall-clock budget, e.g. 90s, 30m, 2h (default: none); caps each trial too."
    ),
    storage: str | None = typer.Option(
        None, help="Optuna database URL (default sqlite:///OUTPUT/study.db), e.g. postgresql://u@host/db."
    ),
    test: Path | None = typer.Option(
        None, help="Labelled data the search never sees: the best trial's run is evaluated on it."
    ),
    seed: int = typer.Option(0, help="Seed of the sampler, the validation split and training."),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="A training option for every trial, e.g. epochs=2 (repeatable).",
    ),
    config: Path | None = typer.Option(None, help="Training YAML config every trial starts from."),
    prune: bool = typer.Option(
        True, help="Stop unpromising trials early (median of earlier trials per epoch)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per finished trial."),
) -> None:
    """Search training options with Optuna (grid or TPE); write results.csv, best.yaml and plots."""
    import pandas as pd
    from rich.table import Table

    from medlens.searching.run import search as do_search
    from medlens.searching.space import parse_sets

    result = do_search(
        src,
        output,
        grid=grid,
        trials=trials,
        jobs=jobs,
        budget=budget,
        storage=storage,
        test=test,
        seed=seed,
        overrides=parse_sets(set_),
        config=config,
        prune=prune,
        progress=not quiet,
    )
    table = Table(title=f"{result['n_trials']} trials ({result['sampler']}), {result['monitor']}")
    df = pd.read_csv(output / "results.csv").drop(columns=["run", "error"])
    for column in df.columns:
        table.add_column(column, justify="right")
    for row in df.itertuples(index=False):
        table.add_row(*("" if pd.isna(v) else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    c = _console()
    c.print(table)
    best = result["best"]
    c.print(f"best: trial {best['number']}, {result['monitor']} {best['value']:.4f}, params {best['params']}")
    if result.get("failed"):  # never silent, even with --quiet
        failed = result["failed"]
        c.print(
            f"{failed['n']} of {result['n_trials']} trials failed, the first with: {failed['first_error']} "
            f"(see {output / 'results.csv'})",
            highlight=False,
        )
    if result.get("test"):
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in result["test"]["metrics"].items() if v is not None)
        c.print(f"test ({result['test']['n_cases']} cases): {metrics}")
    c.print(f"wrote {output / 'results.csv'}, {output / 'best.yaml'}, {output / 'search.json'}")
    c.print("reproduce:")
    c.print(result["reproduce"], highlight=False, soft_wrap=True)


@app.command()
def demo(
    output: Path = typer.Option(Path("medlens-demo"), "-o", "--output", help="Folder for the demo run."),
    quiet: bool = QUIET,
) -> None:
    """Train cnn-small on the embedded brain-MRI sample, evaluate on its held-out part, show report.html."""
    from medlens.pipeline.demo import run_demo

    run = run_demo(output, progress=not quiet)
    _print_summary(run / "summary.json")


convert_app = typer.Typer(no_args_is_help=True, help="Convert datasets between layouts.")
app.add_typer(convert_app, name="convert")


@convert_app.command("slices-to-volumes")
def slices_to_volumes(
    src: Path = typer.Argument(..., help="kaggle_3m tree: <patient>/<patient>_<n>.tif + _mask.tif."),
    output: Path = typer.Argument(..., help="Folder for imagesTr/, labelsTr/ and manifest.csv."),
    overwrite: bool = typer.Option(
        False, help="Replace an existing output folder (only one medlens wrote; never the source)."
    ),
    max_image_mb: float | None = MAX_MB,
    quiet: bool = QUIET,
) -> None:
    """Stack each patient's slices (in slice order) into NIfTI image and mask volumes."""
    from medlens.data.convert import slices_to_volumes as convert

    manifest = convert(src, output, progress=not quiet, overwrite=overwrite, max_image_mb=max_image_mb)
    report = json.loads((output / "convert.json").read_text(encoding="utf-8"))
    for skipped in report.get("skipped", []):  # a patient missing a slice: named, never stacked over
        _console(stderr=True).print(
            f"skipped patient {Path(skipped['path']).name}: {skipped['reason']}",
            style="yellow",
            highlight=False,
            markup=False,
        )
    _console().print(f"[green]wrote[/] {len(manifest)} volumes to {output}")


@convert_app.command("masks-to-labels")
def masks_to_labels(
    src: Path = typer.Argument(..., help="Image/mask pairs (kaggle_3m folders or a CSV image,mask)."),
    output: Path = typer.Argument(..., help="CSV to write: image,label,patient_id,..."),
    positive: str = typer.Option("tumour", help="Label of images whose mask has foreground."),
    negative: str = typer.Option("notumor", help="Label of images whose mask is empty."),
) -> None:
    """Label each image by whether its mask is empty, to train the classifier gate of a two-stage pipeline."""
    from medlens.data.convert import masks_to_labels as convert

    check_output_path(
        output, sources=[src], kind="file", option="OUTPUT", what="labelled CSV", marker="manifest"
    )
    manifest = convert(src, output, positive=positive, negative=negative)
    counts = manifest.df["label"].value_counts().to_dict()
    _console().print(f"[green]wrote[/] {output}: {len(manifest)} images {counts}")


def main() -> None:
    """Run the app: a MedlensError is one line and exit 2; any other exception one line naming a log file
    that holds its traceback, and exit 1 (``--debug`` or ``MEDLENS_DEBUG=1`` print the traceback instead)."""
    _STATE["debug"] = False
    try:
        # not standalone: click would turn an EOFError raised anywhere inside a command (a reader meeting
        # a cut-off file, say) into a bare "Aborted!" and exit 1, hiding what failed
        code = app(standalone_mode=False)
    except Abort as abort:
        if isinstance(abort.__cause__, EOFError):
            _internal_error(abort.__cause__)
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except TyperException as err:  # usage errors (click's exceptions): typer's own rendering, exit 2
        rich_utils.rich_format_error(err)
        sys.exit(err.exit_code)
    except MedlensError as err:
        if _debug():
            import traceback

            traceback.print_exc()
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:
        _internal_error(err)
    if code == 130:  # typer answers Ctrl-C with Exit(130)
        typer.echo("interrupted", err=True)
    # a command's return value is not an exit status; only typer.Exit's code (an int) is
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


_STATE = {"debug": False}


@app.callback()
def _options(
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Print the full traceback of an unexpected error instead of "
        "writing it to a log file (also MEDLENS_DEBUG=1).",
    ),
    threads: str | None = typer.Option(
        None,
        "--threads",
        help="CPU threads for torch (also MEDLENS_THREADS; default: OMP_NUM_THREADS if set, else the "
        "physical cores minus one, which keeps training fast beside other busy programs). The count changes "
        "the order of floating-point sums: give the same one to reproduce a model on another machine.",
    ),
) -> None:
    _STATE["debug"] = debug
    apply_threads(threads)


def _debug() -> bool:
    import os

    return _STATE["debug"] or os.environ.get("MEDLENS_DEBUG", "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )


def _command_name(argv: list[str]) -> str:
    """The subcommand from the command line ("train", "convert slices-to-volumes"), for messages and logs."""
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return ""
    return " ".join(words[:2]) if words[0] == "convert" and len(words) > 1 else words[0]


def _internal_error(err: BaseException) -> None:
    """Print one line naming the exception and the log file with its traceback; exit 1."""
    import traceback

    cmd = _command_name(sys.argv[1:])
    if _debug():
        traceback.print_exc()
        typer.echo(f"internal error in medlens {cmd}: {type(err).__name__}; please report it", err=True)
        sys.exit(1)
    message = str(err).strip()
    what = type(err).__name__ + (f": {message.splitlines()[0]}" if message else "")
    log = _write_log(cmd, traceback.format_exc())
    where = f"traceback in {log}" if log else "the traceback could not be saved (run with --debug to see it)"
    typer.echo(f"internal error in medlens {cmd}: {what} — {where}; please report it", err=True)
    sys.exit(1)


def _write_log(cmd: str, text: str) -> Path | None:
    """Write the traceback to $XDG_CACHE_HOME/medlens/logs (default ~/.cache), else the temp dir; its path."""
    import os
    import platform
    import re
    import tempfile
    from datetime import datetime

    from medlens import __version__

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', cmd) or 'medlens'}-{os.getpid()}.log"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    body = (
        f"medlens {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
        f"command: {' '.join(['medlens', *sys.argv[1:]])}\ntime: {datetime.now().isoformat()}\n\n{text}"
    )
    for folder in (Path(cache) / "medlens" / "logs", Path(tempfile.gettempdir()) / "medlens-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(body, encoding="utf-8")
            return path
        except OSError:
            continue
    return None
