"""Training commands: ``models``, ``summary``, ``train``, ``plan``, ``curve``, ``search``, ``demo``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medlens.cli.app import QUIET, SRC_HELP, _console, app
from medlens.cli.config_options import _with_config_options
from medlens.cli.printing import _print_skipped, _print_summary
from medlens.errors import MedlensError
from medlens.tasks.registry import get_task
from medlens.training.config import TrainConfig


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
