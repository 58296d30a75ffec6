"""Self-configuration: the dataset's fingerprint and a throughput probe on this machine → ``plans.json``.

Every value the plan sets comes with one line of reasoning. The plan only fills what the user left open: a
field given as an option (or in ``--config``) is kept and marked ``"source": "option"``. ``--no-plan`` keeps
the fixed defaults. The rules are deliberately few and written out in :func:`make_plan`, so that a user can
read why a run used 28 px, batch 32, 150 s and a refit.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from medlens.data.augment import AugmentSpec, augment_batch
from medlens.data.fingerprint import fingerprint
from medlens.data.manifest import Manifest
from medlens.models.registry import ModelInfo, create_model
from medlens.models.segmentation import SPECIFIC as SEGMENTATION_MODELS
from medlens.models.segmentation import size_multiple
from medlens.tasks.registry import get_task
from medlens.training.config import FIXED_BATCH, FIXED_EPOCHS, TrainConfig, parse_duration
from medlens.utils.files import check_output_path, write_json

PLAN_FILE = "plans.json"
#: The default budget never exceeds this, per task (seconds): a first answer within a coffee break on 2 cores.
BUDGET_CAP_S = {"classification": 300.0, "segmentation": 600.0, "detection": 300.0}
#: Fewer epochs than this within the budget's cap, and the input size steps down (never below MIN_SIZE).
MIN_EPOCHS, MIN_SIZE = 12, 64
PROBE_STEPS = 16
#: A training epoch takes about this much longer than the probe's bare steps (the loop's own work and
#: validation; measured 1.5-1.7x on cnn-small at 28 and 128 px). Only the default budget uses it: during
#: training the measured epoch time re-fits the schedule (``BudgetCallback``).
LOOP_OVERHEAD = 1.5
#: Below this many labelled cases (train + val) the plan refits on train + val after selecting on val.
SMALL_DATASET = 2000
#: Validation cases the plan aims for (then clamped to 10-20 % of the labelled cases).
VAL_CASES = 600
#: The plan's fields (``TrainConfig`` names); a field the user gave is kept as given.
PLANNED = (
    "image_size",
    "channels",
    "batch_size",
    "lr",
    "augment_strength",
    "val_fraction",
    "final",
    "epochs",
    "budget",
)


def make_plan(
    source: Manifest | str | Path,
    cfg: TrainConfig,
    info: ModelInfo,
    *,
    given: set[str] | None = None,
    probe: bool = True,
) -> dict[str, Any]:
    """The plan for training ``cfg.model`` on ``source``: ``{"fingerprint", "probe", "choices"}``, each choice
    ``{"value", "source": "plan" | "option" | "model", "reason"}``.

    Args:
        source: anything ``medlens train`` reads (resolved by the task).
        cfg: the configuration as given; its non-None planned fields count as given.
        info: the model's registry entry.
        given: fields given explicitly (default: the planned fields that are not None).
        probe: time a few training steps of the model on random tensors (seconds; off in unit tests).
    """
    task = get_task(cfg.task)
    manifest = task.resolve(source)
    fp = fingerprint(manifest, seed=cfg.seed)
    given = {k for k in PLANNED if getattr(cfg, k) is not None} if given is None else set(given)
    choices: dict[str, dict[str, Any]] = {}

    def choose(name: str, value: Any, reason: str, source: str = "plan") -> Any:
        if name in given:
            value, source, reason = getattr(cfg, name), "option", "given explicitly"
        choices[name] = {"value": value, "source": source, "reason": reason}
        return value

    volumes = fp.get("dims") == 3
    pool = fp["n_labelled_pool"]
    has_val = fp["has_val_split"]
    fraction = round(min(0.2, max(0.1, VAL_CASES / max(1, pool))), 3)
    val_fraction = choose(
        "val_fraction",
        fraction,
        "SRC has its own val split, which is used as given (no share is carved)"
        if has_val
        else f"{fraction:.0%} of {pool} cases, stratified"
        + (" and grouped by patient so no patient is on both sides" if fp["grouped_by_patient"] else "")
        + f": about {VAL_CASES} validation cases (an accuracy CI of about +-2 points), between 10 and 20 %, "
        "so that large datasets keep more of their cases for training",
    )
    n_train = max(
        1, int(fp["n_by_split"].get("train", pool) if has_val else round(pool * (1 - val_fraction)))
    )
    n_train = max(1, int(n_train * cfg.fraction))
    small = pool < SMALL_DATASET and not volumes
    final = choose(
        "final",
        False,
        f"off: the run keeps its val split for calibrate, explain's OOD index and the report; with {pool} "
        f"labelled cases (< {SMALL_DATASET}) --final is worth it: it refits on train + val after choosing "
        "the epoch count on val"
        if small
        else f"off: {pool} labelled cases"
        + ("" if volumes else f" (>= {SMALL_DATASET}), so val costs little training data")
        + "; --final refits on train + val after choosing the epoch count on val",
    )
    channels = _plan_channels(choose, fp, info)
    multiple = _size_multiple(cfg)
    size = _plan_size(choose, fp, info, volumes, multiple)
    batch = choose(
        "batch_size",
        FIXED_BATCH if n_train >= 16 * FIXED_BATCH else 16 if n_train >= 128 else 8,
        f"{n_train} training cases: batch {FIXED_BATCH} from 512 cases up, 16 from 128, else 8, so an epoch "
        "has at least 8 steps",
    )
    choose(
        "lr",
        cfg.resolved_lr,
        f"the {cfg.optimizer} default for a one-cycle schedule at batch {FIXED_BATCH} (peak learning rate)",
    )
    _plan_augment(choose, n_train, size)
    passes = _passes(n_train)
    probe_info: dict[str, Any] = {}
    epoch_s = None
    if probe and not volumes:
        probe_info = _safe_probe(cfg, info, task, size, channels, batch)
    if probe_info.get("images_per_s"):
        epoch_s = LOOP_OVERHEAD * n_train / max(probe_info["images_per_s"], 1e-6)
        cap = BUDGET_CAP_S.get(cfg.task, 300.0)
        while (
            "image_size" not in given
            and size > MIN_SIZE
            and cap / epoch_s < MIN_EPOCHS
            and choices["image_size"]["source"] == "plan"
        ):
            smaller = max(MIN_SIZE, int(size * 0.75) // multiple * multiple)
            probe_info = _safe_probe(cfg, info, task, smaller, channels, batch)
            if not probe_info.get("images_per_s"):
                break
            epoch_s = LOOP_OVERHEAD * n_train / max(probe_info["images_per_s"], 1e-6)
            choices["image_size"]["reason"] += (
                f"; stepped down from {size} px, where fewer than {MIN_EPOCHS} epochs fit in {cap:.0f} s"
            )
            choices["image_size"]["value"] = size = smaller
    epochs = choose(
        "epochs",
        passes if not volumes else FIXED_EPOCHS,
        f"at most {passes} epochs for {n_train} training cases (25 x sqrt(4000 / n), 12 to 100: small "
        "datasets get more passes); the budget decides how many run"
        if not volumes
        else f"3D volumes: {FIXED_EPOCHS} epochs (no budget probe for patches yet)",
    )
    budget = _plan_budget(choose, cfg, given, epochs, epoch_s, final, n_train, pool, volumes)
    plan = {
        "fingerprint": fp,
        "probe": probe_info,
        "choices": choices,
        "defaults": fixed_defaults(cfg),
        "n_train_planned": n_train,
        "model": cfg.model,
        "task": cfg.task,
    }
    if budget is not None:
        plan["budget_s"] = parse_duration(budget)
    return plan


#: Why each value the plan does not choose is what it is (``plans.json`` → ``defaults``).
FIXED_REASONS = {
    "model": "the task's default. Classification: cnn-small, a from-scratch residual CNN sized for 2 CPU "
    "cores (1.4 M parameters, 4 stages; on brain MRI 1.4 points below fine-tuned efficientnet-lite0 in half "
    "the time). Segmentation: MONAI's 2D/3D U-Net. Detection: boxnet (one box per image)",
    "task": "classification unless SRC's masks or boxes ask for another (--task)",
    "optimizer": "AdamW: robust to the learning rate across datasets, unlike SGD",
    "scheduler": "one-cycle: warm-up then annealing to ~0, so the last epoch is usually the best and a "
    "time budget ends on a finished schedule",
    "weight_decay": "0.05, AdamW's decoupled decay for small CNNs",
    "momentum": "0.9 (SGD only)",
    "label_smoothing": "0.05: slightly softer targets, better calibrated probabilities",
    "class_weights": "none: the loss follows the data's prevalence; probabilities stay calibrated "
    "(imbalance is shown in the fingerprint; --class-weights auto reweights)",
    "augment": "on: flips, small rotations, scaling, shifts, brightness and contrast, batched",
    "head": "linear on the pooled features",
    "dropout": "0: the budgeted schedules are short and weight decay regularises",
    "freeze_backbone": "off: every layer trains",
    "patience": "no early stopping under one-cycle (stopping half-way leaves the learning rate high; "
    "measured on PneumoniaMNIST: patience 8 stopped a 26-epoch cycle after 13); 8 epochs with other "
    "schedules",
    "monitor": "the task's validation metric (accuracy, Dice or IoU) picks the best epoch",
    "precision": "auto: bf16 mixed precision where the CPU or GPU does bf16 natively (1.7x faster), else "
    "fp32; weights stay fp32",
    "ema": "off: measured within run-to-run noise at a 100 s budget (bench_levers.py, docs/benchmarks.md)",
    "mixup": "off: lowered test accuracy at a 100 s budget (bench_levers.py)",
    "progressive": "off: one more epoch in the budget, no better test accuracy (bench_levers.py)",
    "compile": "off: torch.compile's compile time ate most of a 100 s budget on 2 cores (bench_levers.py)",
    "intensity": "classification: the training set's mean/std; 2D segmentation and detection: each image "
    "standardised; 3D: each volume",
    "seed": "0: runs are deterministic",
    "fraction": "1: every training case",
}


def fixed_defaults(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """The values the plan does not choose, with the reason for each."""
    return {
        name: {"value": getattr(cfg, name), "reason": reason}
        for name, reason in FIXED_REASONS.items()
        if name not in PLANNED
    }


def _plan_augment(choose, n_train: int, size: int | None) -> float:
    """Gentler transforms on small images (a 10-degree rotation and an 8 % shift blur and crop a 28 px image;
    measured on PneumoniaMNIST at 28 px, test accuracy 0.941 at strength 1, 0.964 at 0.5, 0.956 without
    augmentation), stronger ones on small datasets."""
    by_size = 1.0 if size is None or size > 64 else 0.75 if size > 32 else 0.5
    by_count = 1.25 if n_train < 1000 else 1.0
    value = round(min(1.25, by_size * by_count), 3)
    return choose(
        "augment_strength",
        value,
        f"x{by_size:g} for {size} px images (0.5 up to 32 px, 0.75 up to 64 px, 1 above: small images blur "
        f"and crop under the standard ranges) x{by_count:g} for {n_train} training cases (1.25 below 1 000)",
    )


def _passes(n_train: int) -> int:
    return int(min(100, max(12, round(25 * math.sqrt(4000 / max(1, n_train))))))


def _plan_channels(choose, fp: dict, info: ModelInfo) -> int:
    if info.channels:
        return choose("channels", info.channels, f"the model takes {info.channels}-channel input", "model")
    share = fp.get("colour_share")
    colour = share is not None and share >= 0.5
    return choose(
        "channels",
        3 if colour else 1,
        f"{share:.0%} of the sampled images have channels that differ (colour or stacked sequences): "
        + ("all 3 are kept" if colour else "read as one grey channel")
        if share is not None
        else "volumes: one channel",
    )


def _size_multiple(cfg: TrainConfig) -> int:
    """What a planned input side is rounded down to: the U-Net family's 2^levels, else 8."""
    if cfg.model in SEGMENTATION_MODELS:
        return max(8, size_multiple(cfg.model, **(cfg.model_args or {})))
    return 8


def _plan_size(choose, fp: dict, info: ModelInfo, volumes: bool, multiple: int) -> int | None:
    if volumes:
        return choose("image_size", None, "3D volumes train on patches (--patch-size), not a 2D input size")
    native = fp.get("min_side_median")
    if native is None:
        return choose("image_size", info.default_size, "no image could be read to measure; the model's size")
    if native < info.default_size:
        size = max(multiple, native // multiple * multiple) if multiple > 8 else max(8, native)
        why = f"the median image is {native} px: never upsampled beyond its native size"
        if size != native:
            why += f" (rounded down to a multiple of {multiple}, which the model needs)"
    else:
        size = info.default_size
        why = f"the model's {info.default_size} px (the median image is {native} px, so this downsamples)"
    return choose("image_size", size, why)


def _plan_budget(choose, cfg, given, epochs, epoch_s, final, n_train, pool, volumes) -> str | None:
    if "epochs" in given and "budget" not in given:
        return choose("budget", None, "--epochs given: exactly that many epochs run, with no time budget")
    if volumes or epoch_s is None:
        return choose("budget", None, "no throughput probe: the epoch count alone decides")
    cap = BUDGET_CAP_S.get(cfg.task, 300.0)
    refit = epochs * epoch_s * pool / max(1, n_train) if final else 0.0
    need = (epochs * epoch_s + refit) * 1.1  # checkpoints and the first epoch's warm-up on top
    seconds = max(20.0, min(cap, need))
    seconds = math.ceil(seconds / 10) * 10
    return choose(
        "budget",
        f"{seconds:.0f}s",
        f"{epochs} epochs of about {epoch_s:.1f} s each on this machine"
        + (" plus the refit on train + val" if final else "")
        + f" need about {need:.0f} s; capped at {cap:.0f} s for {cfg.task}",
    )


def _safe_probe(cfg, info, task, size, channels, batch) -> dict:
    """The probe, or ``{"error"}`` when the model cannot run at these settings: training then stops on the
    task's own check (e.g. a U-Net size that is not a multiple of 16) with its own message."""
    try:
        return probe_throughput(cfg, info, task, size, channels, batch)
    except Exception as err:
        return {"size": size, "batch": batch, "error": f"{type(err).__name__}: {err}"[:300]}


def probe_throughput(cfg: TrainConfig, info: ModelInfo, task, size: int, channels: int, batch: int) -> dict:
    """Training images per second of the model at ``size`` px on this machine: augmentation, forward and
    backward passes on random tensors at the run's precision, timed once steady (:func:`steady_step_time`).
    """
    import torch

    options = task.model_options(cfg)
    model = create_model(
        cfg.model,
        num_classes=2,
        in_channels=channels,
        spatial_dims=2,
        image_size=size,
        **{**options, "pretrained": False, "weights": None} if "pretrained" in options else options,
    ).train()
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    bf16 = cfg.resolved_precision() == "bf16-mixed"
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        batch_x = (
            augment_batch(x, AugmentSpec(), gen).contiguous(memory_format=torch.channels_last)
            if cfg.augment
            else x
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(batch_x)
        loss = sum(o.float().mean() for o in (out if isinstance(out, (tuple, list)) else [out]))
        loss.backward()
        model.zero_grad(set_to_none=True)

    step_s, n = steady_step_time(step)
    return {
        "size": size,
        "batch": batch,
        "step_s": round(step_s, 4),
        "images_per_s": round(batch / step_s, 1),
        "steps_timed": n,
    }


def steady_step_time(step, *, most: int = PROBE_STEPS, limit_s: float = 40.0) -> tuple[float, int]:
    """Seconds per call of ``step()`` once steady: oneDNN builds its kernels over the first calls of a new
    shape (up to ~10 calls for bf16 on CPU), so calls continue until three in a row agree within 25 % (or
    ``most`` calls, or ``limit_s``). Returns (the median of the last three, calls made)."""
    times: list[float] = []
    while len(times) < most and sum(times) < limit_s:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        tail = times[-3:]
        if len(times) >= 4 and max(tail) <= 1.25 * min(tail):
            break
    tail = sorted(times[-3:])
    return tail[len(tail) // 2], len(times)


def apply_plan(cfg: TrainConfig, plan: dict[str, Any]) -> TrainConfig:
    """``cfg`` with the plan's values filled in where ``cfg`` leaves a field open (a value given now wins,
    e.g. a larger ``--epochs`` on ``--resume``)."""
    values = {k: c["value"] for k, c in plan["choices"].items() if getattr(cfg, k, None) is None}
    return cfg.replace(**values)


def resolve_fixed(cfg: TrainConfig) -> TrainConfig:
    """``--no-plan``: the fixed defaults for whatever is left open."""
    return cfg.replace(
        epochs=cfg.epochs or FIXED_EPOCHS,
        batch_size=cfg.batch_size or FIXED_BATCH,
        final=bool(cfg.final),
        val_fraction=cfg.val_fraction or 0.2,
    )


def write_plan(run: Path, plan: dict[str, Any]) -> Path:
    return write_json(run / PLAN_FILE, plan)


def plan(
    source: Manifest | str | Path,
    config: TrainConfig | None = None,
    *,
    output: str | Path | None = None,
    probe: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """What ``medlens train`` would choose for ``source``, without training: the dataset's fingerprint and
    every planned value with its reason (the same ``plans.json`` a run holds).

    Args:
        source: anything ``medlens train`` reads.
        config: a TrainConfig; ``overrides`` (non-None keyword arguments) replace its fields, and count as
            given (the plan keeps them).
        output: also write the plan to this JSON file.
        probe: time the model on this machine (for the input size cap and the default budget).
    """
    from medlens.io.guard import image_limit
    from medlens.models.registry import get_model_info

    if output is not None:  # a plan never replaces its source, a run's files or a file it did not write
        check_output_path(output, sources=[source], kind="file", marker="plan", what="plan JSON")
    cfg = (config or TrainConfig()).replace(**{k: v for k, v in overrides.items() if v is not None})
    info = get_model_info(cfg.model)
    with image_limit(cfg.max_image_mb):
        result = make_plan(source, cfg, info, probe=probe)
    if output is not None:
        write_json(Path(output), result)
    return result
