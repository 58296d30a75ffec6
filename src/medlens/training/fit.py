"""`medlens train`: source → manifest → split → cached tensors → Lightning loop → run directory.

The run is written under ``<RUN_DIR>.partial`` and renamed to ``RUN_DIR`` only when training and evaluation
have finished, so a crash never leaves a run that looks complete. An interrupted run keeps its partial folder
and ``--resume`` continues from its last checkpoint.
"""

from __future__ import annotations

import logging
import resource
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest
from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.io.guard import image_limit
from medlens.models.registry import create_model
from medlens.tasks.registry import get_task
from medlens.training.config import TrainConfig, check_devices, check_model
from medlens.training.resume import load_checkpoint, record_or_check
from medlens.training.run_plan import plan_run
from medlens.utils.files import atomic_write_text, check_output_path, read_marker, write_json, write_marker

#: ``fix(manifest, progress) -> (fixed manifest, change records)``: the audit's fixer, from the pipeline.
FixHook = Callable[[Manifest, bool], tuple[Manifest, list[dict]]]
#: ``finish(run_dir, prepared data, run name, progress, split=None)``: what completes a run (the pipeline
#: evaluates it; ``split="val"`` for the selection fit of ``--final``).
FinishHook = Callable[..., None]


def model_options(cfg: TrainConfig) -> dict[str, Any]:
    """The model factory's keyword arguments: the task's option fields of ``cfg`` plus ``model_args``."""
    return get_task(cfg.task).model_options(cfg)


def train(
    source: Manifest | str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    fix: FixHook | None = None,
    finish: FinishHook | None = None,
    **overrides: Any,
) -> Path:
    """Train a model for ``config.task`` on ``source`` and write a complete run directory at ``out_dir``.

    Training knows nothing of auditing or evaluation: :func:`medlens.pipeline.steps.train` (the public
    ``medlens.train``) passes them in as the ``fix`` and ``finish`` hooks.

    Args:
        source: a Manifest, a manifest CSV, class folders, an npz file, image/mask pairs, NIfTI volumes, a
            boxes CSV ... (anything ``ingest`` reads that fits the task).
        out_dir: the run directory to create.
        config: a TrainConfig; ``overrides`` (non-None keyword arguments) replace its fields.
        overwrite: replace an existing run directory.
        resume: continue an interrupted run from ``<out_dir>.partial/checkpoints/last.ckpt``.
        progress: show progress bars.
        fix: ``fix(manifest, progress) -> (manifest, changes)``, run after the validation split is carved when
            ``config.audit_fix`` is on (the pipeline passes the audit's duplicate fixer).
        finish: ``finish(run_dir, data, run_name, progress)``, run on the complete ``.partial`` folder before
            it is renamed (the pipeline evaluates and writes summary.json and report.html there).

    Returns:
        The run directory (model.pt, config.yaml, manifest.csv, history.csv, train.json, and what ``finish``
        wrote).
    """
    cfg = (config or TrainConfig()).replace(**{k: v for k, v in overrides.items() if v is not None})
    if cfg.audit_fix and fix is None:
        raise MedlensError(
            "audit_fix needs the audit's fixer: call medlens.train (the pipeline), not the bare training step"
        )
    check_devices(cfg)  # --accelerator gpu without a GPU etc.: before any folder exists
    info = check_model(cfg.model, cfg.task)  # unknown model, or one of another task: fail before any work
    out_dir = Path(out_dir)
    # a file, a source, or (with --overwrite) a folder medlens did not write: refused before any work
    check_output_path(out_dir, sources=[source], overwrite=overwrite, what="run directory")
    if out_dir.name in ("", ".."):  # "-o ." has no name to put .partial after
        out_dir = out_dir.resolve()
    partial = out_dir.with_name(out_dir.name + ".partial")
    # DDP: the other processes run this same call to train alongside rank 0, which alone owns the folder
    child = launch_rank() > 0
    if partial.exists() and not resume and not child:
        check_output_path(partial, overwrite=True, what="unfinished run folder")  # only a medlens .partial
        shutil.rmtree(partial)
    if resume and not (partial / "checkpoints" / "last.ckpt").is_file():
        raise MedlensError(f"nothing to resume: {partial}/checkpoints/last.ckpt does not exist")
    partial.mkdir(parents=True, exist_ok=True)
    if not child:
        if read_marker(partial) is None:
            write_marker(partial, "run")  # travels with the rename: known as medlens's for --overwrite
        # the options as given are what a resumed run must repeat; the plan it then reuses is plans.json
        record_or_check(partial, cfg, info, resume=resume, run=out_dir)
    started = False
    try:
        source = get_task(cfg.task).resolve(source)  # ingested once: the plan and the data share it
        cfg, estimate = plan_run(source, cfg, info, partial, resume=resume, child=child, progress=progress)
        data, spec, audit_changes = _prepare(source, cfg, info, progress, fix)
        started = True
        if cfg.final:
            _fit_final(
                data, spec, cfg, partial, audit_changes, resume, progress, finish, str(out_dir), estimate
            )
        else:
            stats = _fit(data, spec, cfg, partial, resume=resume, progress=progress)
            stats["estimate"] = estimate
            _write_run_files(partial, data, spec, cfg, stats, audit_changes)
            if finish is not None:
                finish(partial, data, str(out_dir), progress)
    except BaseException:
        if not started and not child:  # bad input: nothing worth keeping
            shutil.rmtree(partial, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return out_dir


def launch_rank() -> int:
    """This process's global rank when a launcher started it (Lightning's DDP subprocesses set LOCAL_RANK and
    NODE_RANK, torchrun RANK, SLURM SLURM_PROCID), else 0."""
    import os

    def number(key: str) -> int:
        try:
            return int(os.environ.get(key, "0") or 0)
        except ValueError:
            return 0

    return max(number("RANK"), number("SLURM_PROCID"), number("LOCAL_RANK"), number("NODE_RANK"))


def _fit_final(
    data, spec, cfg: TrainConfig, partial: Path, audit_changes, resume, progress, finish, name, estimate=None
):
    """``--final``: fit with validation into ``selection/`` (evaluated on val there), then refit on train +
    val for the epoch count the selection fit chose; the refit model is the run's model.

    The refit model is scored only on a test split, when the data has one. Without one, summary.json carries
    the selection model's validation metrics, marked as such (``evaluated_model: "selection"``).
    """
    import dataclasses
    import json

    from medlens.training.config import parse_duration

    selection = partial / "selection"
    selection.mkdir(exist_ok=True)
    if read_marker(selection) is None:
        write_marker(selection, "run")
    n_train, n_val = len(data.indices("train")), len(data.indices("val"))
    share = n_train / (n_train + n_train + n_val)  # the refit sees train + val for as many epochs
    budget = parse_duration(cfg.budget) if cfg.budget else None
    sel_cfg = cfg.replace(budget=f"{budget * share:.0f}s") if budget else cfg
    stats = _fit(data, spec, sel_cfg, selection, resume=resume, progress=progress)
    monitor = cfg.resolved_monitor
    rows = stats["history"]
    best = max(range(len(rows)), key=lambda i: (rows[i].get(monitor) is not None, rows[i].get(monitor) or 0))
    epochs = best + 1
    _write_run_files(selection, data, spec, sel_cfg, stats, audit_changes)  # pops "model" and "history"
    if finish is not None:
        finish(selection, data, f"{name} (selection fit)", progress, split="val")
    df = data.manifest.df.copy()
    df.loc[df["split"] == "val", "split"] = "train"
    try:
        refit_data = dataclasses.replace(data, manifest=data.manifest.with_df(df))
    except TypeError as err:
        raise MedlensError(
            f"--final is not available for {cfg.task} runs of this kind; use --no-final"
        ) from err
    refit_cfg = cfg.replace(epochs=epochs, budget=None)
    final = _fit(refit_data, spec, refit_cfg, partial, resume=False, progress=progress, validate=False)
    final["final"] = {
        "refit_on": "train+val",
        "epochs": epochs,
        "chosen_on": f"val ({monitor} peaked at epoch {epochs} of {len(rows)} in the selection fit)",
        "n_images": n_train + n_val,
        "selection": "selection/",
        "selection_train_seconds": stats["train_seconds"],
        "selection_best_score": stats["best_score"],
    }
    final["train_seconds_total"] = round(stats["train_seconds"] + final["train_seconds"], 2)
    final["estimate"] = estimate
    if budget:
        final["budget"] = {"budget": cfg.budget, "budget_s": budget, "selection": stats.get("budget")}
    _write_run_files(partial, refit_data, spec, refit_cfg, final, audit_changes)
    has_test = len(data.indices("test")) > 0
    if finish is not None and has_test:
        finish(partial, refit_data, name, progress)
    elif (selection / "summary.json").is_file():
        summary = json.loads((selection / "summary.json").read_text())
        summary["evaluated_model"] = "selection"
        summary["final"] = {
            **final["final"],
            "note": "The run's model was refit on train + val, so it has no held-out score here. The metrics "
            "are the selection model's on val (trained on train only; its best epoch, "
            f"{epochs}, set the refit's length); evaluate the run's model on other held-out data with "
            "`medlens evaluate RUN --data SRC`.",
        }
        write_json(partial / "summary.json", summary)
        for extra in ("report.html", "predictions.csv"):
            if (selection / extra).is_file():
                shutil.copyfile(selection / extra, partial / extra)


def _prepare(source, cfg: TrainConfig, info, progress: bool, fix: FixHook | None):
    """The task's data (``prepare`` hook), decoded under the run's per-file size limit (``max_image_mb``)."""
    with image_limit(cfg.max_image_mb):
        return get_task(cfg.task).prepare(source, cfg, info, progress, fix)


def _fit(
    data, spec: PreprocessingSpec, cfg: TrainConfig, run: Path, *, resume: bool, progress: bool, validate=True
) -> dict:
    # deferred: torch and Lightning (and the modules below, which import them) load only to train
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from medlens.training.callbacks import BudgetCallback, HistoryCallback, RngStateCallback, rng_sources
    from medlens.training.module import LitModel

    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own deprecation noise
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # in-memory tensors need none
    warnings.filterwarnings(
        "ignore", message=".*module\\(s\\) in eval mode.*"
    )  # frozen backbones, on purpose
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # --resume continues there
    warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # val metrics: gathered, then logged
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task = get_task(cfg.task)
    model = create_model(
        cfg.model,
        num_classes=task.num_outputs(spec),
        in_channels=spec.channels,
        spatial_dims=spec.spatial_dims,
        image_size=spec.image_size,
        **model_options(cfg),
    )
    if cfg.compile:
        model.compile()  # in place: the state dict keeps its names
    lit = LitModel(model, make_task(cfg, data, spec), spec, cfg)
    monitor = cfg.resolved_monitor if validate else None
    ckpt = ModelCheckpoint(
        dirpath=run / "checkpoints",
        filename="best",
        monitor=monitor,
        mode="max",
        save_top_k=1 if validate else 0,
        save_last=True,
    )
    history = HistoryCallback()
    train_loader = data.loader("train", cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_loader = data.loader("val", max(cfg.batch_size, task.val_batch), shuffle=False) if validate else None
    budget = fit_budget(lit, train_loader, val_loader, cfg, run, resume=resume) if cfg.budget else None
    max_epochs = budget["epochs_planned"] if budget else cfg.epochs
    if budget and progress:
        from rich.console import Console

        Console(stderr=True).print(
            f"budget {cfg.budget}: {max_epochs} epoch(s) of about {budget['probe_epoch_s']:.2g} s on this "
            "machine (a short probe); the one-cycle schedule ends with the budget",
            highlight=False,
        )
    limits = [m for m in (cfg.max_minutes, budget["budget_s"] / 60 if budget else None) if m]
    # history rows and every random stream go into each checkpoint, so --resume continues bit-identically
    callbacks = [
        ckpt,
        history,
        RngStateCallback(rng_sources(lit, train_loader)),
        *(
            [EarlyStopping(monitor=monitor, mode="max", patience=cfg.resolved_patience)]
            if validate and cfg.resolved_patience is not None
            else []
        ),
        *([_ema(max_epochs * len(train_loader))] if cfg.ema else []),
    ]
    keeper = (
        BudgetCallback(budget["budget_s"], budget.get("epochs_cap", max_epochs), BUDGET_SHARE)
        if budget
        else None
    )
    callbacks += [keeper] if keeper else []
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic="warn",  # torch's deterministic kernels; an op without one warns (docs/plans.md)
        max_time={"minutes": min(limits)} if limits else None,  # the budget's safety net
        default_root_dir=run,
        num_sanity_val_steps=0,
        precision=cfg.resolved_precision(),
    )
    last = run / "checkpoints" / "last.ckpt"
    if resume:  # a damaged file is named in one line here, not deep inside Lightning's loader
        load_checkpoint(last, run=run)
    t0 = time.perf_counter()
    trainer.fit(lit, train_loader, val_loader, ckpt_path=str(last) if resume else None, weights_only=True)
    wall = time.perf_counter() - t0
    if trainer.global_rank != 0:
        # DDP: every process ran the same command to train together; only rank 0 writes and evaluates the run
        raise SystemExit(0)
    best = (ckpt.best_model_path if validate else "") or str(run / "checkpoints" / "last.ckpt")
    if not Path(best).is_file():
        per_process = len(data.indices("train")) // max(1, trainer.world_size)
        raise MedlensError(
            f"training saved no checkpoint: no epoch completed ({per_process} training images per process, "
            f"batch size {cfg.batch_size}); lower --batch-size or use fewer --devices"
        )
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    lit.load_state_dict(state)
    n_seen = history.train_images(len(data.indices("train")))
    return {
        "model": lit.model,
        "history": history.rows,
        "train_seconds": round(wall, 2),
        "epochs_run": len(history.rows),
        "images_per_second": round(n_seen / wall, 1) if wall else None,
        "best_checkpoint": Path(best).name,
        "best_score": _best(history.rows, monitor),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **({"resumed_after_epoch": history.restored} if resume else {}),
        **(
            {
                "budget": {
                    **budget,
                    "used_s": round(wall, 1),
                    "epochs_run": len(history.rows),
                    "replanned": keeper.changes if keeper else [],
                }
            }
            if budget
            else {}
        ),
    }


def _ema(total_steps: int):
    """``--ema``: Lightning's EMA of the weights over the last three quarters of the planned steps, with a
    time constant of an eighth of them. A fixed decay (e.g. 0.998) started at step 0 keeps ~10 % of the
    near-random early weights in the average of a 1 000-step CPU run (measured: 0.73 test accuracy against
    0.93 without EMA on brain MRI)."""
    from lightning.pytorch.callbacks import EMAWeightAveraging

    decay = min(0.9999, max(0.9, 1 - 8 / max(1, total_steps)))
    return EMAWeightAveraging(decay=decay, update_starting_at_step=total_steps // 4)


BUDGET_FILE = "budget.json"
BUDGET_SHARE = 0.92  # of the budget planned for epochs: the rest absorbs slow epochs and the last checkpoint


def fit_budget(lit, train_loader, val_loader, cfg: TrainConfig, run: Path, *, resume: bool) -> dict:
    """Fit the number of epochs to ``cfg.budget`` on this machine: time a few training steps and one
    validation batch on a copy of the model, extrapolate one epoch, and plan as many as fit.

    The plan is written to ``RUN.partial/budget.json`` and reused by ``--resume`` (a resumed run keeps its
    schedule). It replaces ``--epochs``; the one-cycle schedule then ends with the budget, and the Trainer's
    ``max_time`` stops a run that still overruns.
    """
    import copy
    import json

    import torch

    from medlens.training.config import parse_duration
    from medlens.training.estimate import steady_step_time
    from medlens.training.plans import BUDGET_NOTE
    from medlens.utils.progress import report

    path = run / BUDGET_FILE
    if resume and path.is_file():
        return json.loads(path.read_text())
    budget_s = parse_duration(cfg.budget)
    model = copy.deepcopy(lit.model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.0) if params else None
    gen = torch.Generator().manual_seed(cfg.seed)  # the run's own generators stay untouched
    dataset, batch = train_loader.dataset, train_loader.batch_size or 1
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.resolved_precision() == "bf16-mixed")
    position = iter(range(10**6))

    def train_step() -> None:
        start = (next(position) * batch) % max(1, len(dataset) - batch + 1)
        prepared = lit.task.prepare_batch(dataset[start : start + batch], lit.spec, lit.augment, gen)
        loss, _ = lit.task.training_loss(model, prepared)
        loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    with autocast:
        step_s, _ = steady_step_time(train_step)  # oneDNN builds its kernels over the first steps
        vset = val_loader.dataset
        t0 = time.perf_counter()
        with torch.no_grad():
            model.eval()
            lit.task.validation_outputs(
                model, lit.task.prepare_batch(vset[: val_loader.batch_size], lit.spec)
            )
        val_batch_s = time.perf_counter() - t0
    epoch_s = step_s * len(train_loader) + val_batch_s * len(val_loader)
    most = cfg.epochs or 500
    epochs = max(1, min(most, int(BUDGET_SHARE * budget_s / max(epoch_s, 1e-6))))
    plan = {
        "budget": cfg.budget,
        "budget_s": budget_s,
        "probe_step_s": round(step_s, 4),
        "probe_epoch_s": round(epoch_s, 2),
        "epochs_planned": epochs,
        "epochs_cap": most,
        "rule": f"epochs = {BUDGET_SHARE:g} x budget / probed epoch time, from 1 to the epoch cap ({most})",
        "source": "option",
        "note": BUDGET_NOTE,
    }
    write_json(path, plan)
    report("budget", **{k: v for k, v in plan.items() if k != "rule"})
    return plan


def make_task(cfg: TrainConfig, data, spec: PreprocessingSpec):
    """The task object whose hooks the loop calls (the task's ``make_loop_task`` hook)."""
    return get_task(cfg.task).make_loop_task(cfg, data, spec)


def _best(rows: list[dict], monitor: str) -> float | None:
    values = [r[monitor] for r in rows if r.get(monitor) is not None]
    return max(values) if values else None


def _final_location(run: Path) -> str:
    """Where ``run`` will be once ``<name>.partial`` is renamed: the folder manifest.csv's relative paths
    were written against (see :func:`medlens.data.run_data.load_run_manifest`)."""
    parts = list(run.resolve().parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].endswith(".partial"):
            parts[i] = parts[i].removesuffix(".partial")
            break
    return str(Path(*parts))


def _write_run_files(
    run: Path, data, spec: PreprocessingSpec, cfg: TrainConfig, stats: dict, audit_changes: list[dict]
) -> None:
    import yaml

    from medlens.models.checkpoint import MODEL_FILE, save_model  # deferred: imports torch

    save_model(
        run / MODEL_FILE,
        stats.pop("model"),
        name=cfg.model,
        options=model_options(cfg),
        spec=spec,
        meta={"train_seconds": stats["train_seconds"], "epochs_run": stats["epochs_run"]},
    )
    atomic_write_text(run / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    data.manifest.save(run / "manifest.csv")
    pd.DataFrame(stats.pop("history")).to_csv(run / "history.csv", index=False)
    counts = {}
    if data.manifest.has_labels:
        table = data.manifest.df.groupby(["split", "label"]).size().unstack(fill_value=0)
        counts = {s: {c: int(v) for c, v in row.items()} for s, row in table.iterrows()}
    write_json(
        run / "train.json",
        {
            **stats,
            "task": cfg.task,
            "spec": spec.to_dict(),
            "skipped": data.skipped,
            "read_notes": getattr(data, "notes", []),
            "audit_fix": audit_changes,
            "class_counts": counts,
            "n_images": {s: len(data.indices(s)) for s in ("train", "val", "test")},
            "manifest_root": _final_location(run),  # a copied run still finds its data from here
            **getattr(data, "info", {}),
        },
    )
