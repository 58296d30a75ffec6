"""The plan's rules: each planned value as a function of the dataset's fingerprint and the options alone.

No rule reads a clock. The same data, options and seed give the same plan on any machine, idle or busy; how
long the plan takes on this machine is estimated separately (:mod:`medlens.training.estimate`) and never
feeds back into it. Every rule returns its value through ``choose(name, value, reason)``, which keeps a value
the user gave.
"""

from __future__ import annotations

import math
from typing import Any

from medlens.models.registry import ModelInfo
from medlens.models.segmentation import SPECIFIC as SEGMENTATION_MODELS
from medlens.models.segmentation import size_multiple
from medlens.training.config import FIXED_BATCH, TrainConfig

#: 2D epochs: EPOCH_SCALE x sqrt(EPOCH_REF / n_train), between MIN_EPOCHS and MAX_EPOCHS (small datasets
#: get more passes). Sized on the recorded per-epoch times (docs/benchmarks.md): 44 epochs of cnn-small at
#: 128 px on the 5 108 training images of the brain-MRI folder (about 16 s each, 12 min on the 2-core VM);
#: 46 epochs at 28 px on PneumoniaMNIST (about 4 s each, 3 min).
EPOCH_SCALE, EPOCH_REF, MIN_EPOCHS, MAX_EPOCHS = 50, 4000, 15, 150
#: 2D work cap: at most this many image presentations (training images x epochs), counted at 128 x 128 px
#: (a 256 px image counts 4 times). About 15 minutes of cnn-small on 2 cores; large datasets need fewer
#: passes, so the cap shortens their schedule instead of their input size. Never fewer than CAP_FLOOR epochs.
WORK_CAP, WORK_SIDE, CAP_FLOOR = 300_000, 128, 3
#: 3D: the patch side aimed for (X, Y, Z), the voxels per batch aimed for, and the optimiser steps aimed for.
PATCH_3D, VOXELS_PER_BATCH, STEPS_3D = (96, 96, 32), 1_200_000, 1500
MIN_EPOCHS_3D, MAX_EPOCHS_3D = 10, 200


def plan_epochs(choose, n_train: int, size: int | None, budget: bool) -> int:
    """2D: more passes for small datasets, fewer for large or large-image ones (the work cap)."""
    passes = int(
        min(MAX_EPOCHS, max(MIN_EPOCHS, round(EPOCH_SCALE * math.sqrt(EPOCH_REF / max(1, n_train)))))
    )
    side = size or WORK_SIDE
    weight = (side / WORK_SIDE) ** 2
    capped = max(CAP_FLOOR, int(WORK_CAP / max(1.0, n_train * weight)))
    epochs = min(passes, capped)
    reason = (
        f"{passes} epochs for {n_train} training cases ({EPOCH_SCALE} x sqrt({EPOCH_REF} / n), "
        f"{MIN_EPOCHS} to {MAX_EPOCHS}: small datasets get more passes)"
    )
    if capped < passes:
        reason += (
            f", capped at {epochs} so that training sees at most {WORK_CAP:,} images of {WORK_SIDE} px "
            f"({n_train} images of {side} px per epoch)"
        )
    reason += "; the one-cycle schedule ends with the last epoch"
    reason += "; --budget decides how many of them run" if budget else ""
    return choose("epochs", epochs, reason)


def plan_batch(choose, n_train: int) -> int:
    """2D: batch 32 where an epoch still has 16 steps, else smaller."""
    return choose(
        "batch_size",
        FIXED_BATCH if n_train >= 16 * FIXED_BATCH else 16 if n_train >= 128 else 8,
        f"{n_train} training cases: batch {FIXED_BATCH} from 512 cases up, 16 from 128, else 8, so an epoch "
        "has at least 8 steps",
    )


def plan_patch(choose, fp: dict, cfg: TrainConfig, multiple: int) -> list[int] | None:
    """3D: each side the volumes' 90th-percentile side, at most 96 x 96 x 32, rounded up to what the network
    needs (never larger than the largest volume, so no patch trains on padding alone)."""
    p90 = fp.get("shape_p90")
    if cfg.spacing is not None or not p90:
        return choose(
            "patch_size",
            None,
            "fitted to the volumes once they are resampled to --spacing: each side the largest volume's, at "
            f"most {','.join(map(str, PATCH_3D))}"
            if cfg.spacing is not None
            else "no volume could be read to measure: fitted to the volumes when they are read",
        )
    patch = [int(math.ceil(min(w, int(s)) / multiple) * multiple) for w, s in zip(PATCH_3D, p90)]
    return choose(
        "patch_size",
        patch,
        f"the volumes' 90th-percentile size {p90} voxels, at most {','.join(map(str, PATCH_3D))} per side, "
        f"rounded up to a multiple of {multiple} (what the network's downsampling needs)",
    )


def plan_batch_3d(choose, patch: list[int] | None, n_train: int, per_volume: int) -> int:
    """3D: as many patches as make about VOXELS_PER_BATCH voxels (a power of two, 2 to 8), so that memory
    stays flat whatever the patch size."""
    voxels = math.prod(patch) if patch else math.prod(PATCH_3D)
    fit = max(1, VOXELS_PER_BATCH // voxels)
    batch = max(2, min(8, 2 ** int(math.log2(fit))))
    batch = max(1, min(batch, n_train * per_volume))
    return choose(
        "batch_size",
        batch,
        f"about {VOXELS_PER_BATCH:,} voxels per batch: {batch} patches of {voxels:,} voxels (a power of two, "
        f"2 to 8, at most the {n_train * per_volume} patches of an epoch)",
    )


def plan_epochs_3d(choose, n_train: int, per_volume: int, batch: int, budget: bool) -> int:
    """3D: a fixed number of optimiser steps (nnU-Net trains a fixed schedule too), spread over epochs of
    ``n_train x samples_per_volume`` patches."""
    steps = max(1, math.ceil(n_train * per_volume / max(1, batch)))
    epochs = int(min(MAX_EPOCHS_3D, max(MIN_EPOCHS_3D, round(STEPS_3D / steps))))
    reason = (
        f"about {STEPS_3D} optimiser steps: {n_train} volumes x {per_volume} patches / batch {batch} = "
        f"{steps} steps per epoch ({MIN_EPOCHS_3D} to {MAX_EPOCHS_3D} epochs)"
    )
    return choose("epochs", epochs, reason + ("; --budget decides how many run" if budget else ""))


def plan_budget(choose, given: set[str]) -> None:
    """No time budget unless ``--budget`` is given: the plan does not depend on how fast this machine is."""
    choose(
        "budget",
        None,
        "none: the epoch count comes from the data, so the same data and options give the same model on any "
        "machine; --budget makes wall-clock time decide the epoch count instead",
    )


def plan_augment(choose, n_train: int, size: int | None) -> float:
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


def plan_channels(choose, fp: dict, info: ModelInfo) -> int:
    """The model's channels where it needs some, else 3 for colour (or stacked sequences), else 1."""
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
        else "volumes: the channels the volumes have",
    )


def size_multiple_of(cfg: TrainConfig, volumes: bool = False) -> int:
    """What a planned side is rounded to: the U-Net family's 2^levels (2D: at least 8), else 8. A 3D patch
    takes the network's own multiple, the one training checks it against."""
    if cfg.model in SEGMENTATION_MODELS:
        multiple = size_multiple(cfg.model, **(cfg.model_args or {}))
        return multiple if volumes else max(8, multiple)
    return 8


def plan_size(choose, fp: dict, info: ModelInfo, volumes: bool, multiple: int) -> int | None:
    """The model's input size, never upsampled beyond the median image's native size."""
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


#: Why each value the plan does not choose is what it is (``plans.json`` → ``defaults``).
FIXED_REASONS = {
    "model": "the task's default. Classification: cnn-small, a from-scratch residual CNN sized for 2 CPU "
    "cores (1.4 M parameters, 4 stages; on brain MRI 1.4 points below fine-tuned efficientnet-lite0 in half "
    "the time). Segmentation: MONAI's 2D/3D U-Net. Detection: boxnet (one box per image)",
    "task": "classification unless SRC's masks or boxes ask for another (--task)",
    "optimizer": "AdamW: robust to the learning rate across datasets, unlike SGD",
    "scheduler": "one-cycle: warm-up then annealing to ~0, so the last epoch is usually the best",
    "weight_decay": "0.05, AdamW's decoupled decay for small CNNs",
    "momentum": "0.9 (SGD only)",
    "label_smoothing": "0.05: slightly softer targets, better calibrated probabilities",
    "class_weights": "none: the loss follows the data's prevalence; probabilities stay calibrated "
    "(imbalance is shown in the fingerprint; --class-weights auto reweights)",
    "augment": "on: flips, small rotations, scaling, shifts, brightness and contrast, batched",
    "head": "linear on the pooled features",
    "dropout": "0: weight decay and augmentation regularise",
    "freeze_backbone": "off: every layer trains",
    "patience": "no early stopping under one-cycle (stopping half-way leaves the learning rate high; "
    "measured on PneumoniaMNIST: patience 8 stopped a 26-epoch cycle after 13); 8 epochs with other "
    "schedules",
    "monitor": "the task's validation metric (accuracy, Dice or IoU) picks the best epoch",
    "precision": "auto: bf16 mixed precision where the CPU or GPU does bf16 natively (1.7x faster), else "
    "fp32; weights stay fp32",
    "max_minutes": "none: no wall-clock limit, so every run of the plan trains the same epochs",
    "ema": "off: measured within run-to-run noise at a 100 s budget (bench_levers.py, docs/benchmarks.md)",
    "mixup": "off: lowered test accuracy at a 100 s budget (bench_levers.py)",
    "progressive": "off: one more epoch in the budget, no better test accuracy (bench_levers.py)",
    "compile": "off: torch.compile's compile time ate most of a 100 s budget on 2 cores (bench_levers.py)",
    "intensity": "classification: the training set's mean/std; 2D segmentation and detection: each image "
    "standardised; 3D: each volume",
    "samples_per_volume": "3D: 4 random patches per volume and epoch, half centred on the foreground",
    "seed": "0: the same data, options and seed give the same plan and, on the same machine, the same "
    "weights (deterministic algorithms on)",
    "fraction": "1: every training case",
}


def fixed_defaults(cfg: TrainConfig, planned: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The values the plan does not choose, with the reason for each."""
    return {
        name: {"value": getattr(cfg, name), "reason": reason}
        for name, reason in FIXED_REASONS.items()
        if name not in planned
    }
