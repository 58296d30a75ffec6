"""Self-configuration: the dataset's fingerprint and the options → ``plans.json``.

Every value the plan sets is a function of the fingerprint and the options alone, with one line of
reasoning (the rules: :mod:`medlens.training.plan_rules`). No value depends on a clock: the same data, options
and seed give a byte-identical ``plans.json`` on an idle or a busy machine. How long the run will take here is
estimated apart from the plan (:mod:`medlens.training.estimate`, ``train.json`` → ``estimate``). A field
given as an option (or in ``--config``) is kept and marked ``"source": "option"``; ``--budget`` is the one
option that lets wall-clock time decide the epoch count. ``--no-plan`` keeps the fixed defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medlens.data.fingerprint import fingerprint
from medlens.data.manifest import Manifest
from medlens.models.registry import ModelInfo
from medlens.tasks.registry import get_task
from medlens.training import plan_rules as rules
from medlens.training.config import FIXED_BATCH, FIXED_EPOCHS, TrainConfig, parse_duration
from medlens.training.estimate import describe, estimate_run, steady_step_time
from medlens.utils.files import check_output_path, write_json

__all__ = ["PLANNED", "apply_plan", "describe", "make_plan", "plan", "resolve_fixed", "steady_step_time"]

PLAN_FILE = "plans.json"
#: Below this many labelled cases (train + val) the plan's reason recommends --final.
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
    "patch_size",
    "epochs",
    "budget",
)
#: ``plans.json`` → ``probe``: what replaced the timing that earlier plans held.
NO_TIMING = {
    "decides": "nothing",
    "note": "the plan holds no timing: every value comes from the fingerprint and the options, so the same "
    "data, options and seed give the same plan on any machine; the time estimate is in train.json → "
    "estimate and on the terminal",
}


def make_plan(
    source: Manifest | str | Path,
    cfg: TrainConfig,
    info: ModelInfo,
    *,
    given: set[str] | None = None,
    probe: bool = True,
) -> dict[str, Any]:
    """The plan for training ``cfg.model`` on ``source``: ``{"fingerprint", "choices", "defaults", ...}``,
    each choice ``{"value", "source": "plan" | "option" | "model", "reason"}``.

    Args:
        source: anything ``medlens train`` reads (resolved by the task).
        cfg: the configuration as given; its non-None planned fields count as given.
        info: the model's registry entry.
        given: fields given explicitly (default: the planned fields that are not None).
        probe: kept for compatibility; the plan never times anything (see :func:`estimate`).
    """
    manifest = get_task(cfg.task).resolve(source)
    fp = fingerprint(manifest, seed=cfg.seed)
    given = {k for k in PLANNED if getattr(cfg, k) is not None} if given is None else set(given)
    choices: dict[str, dict[str, Any]] = {}

    def choose(name: str, value: Any, reason: str, source: str = "plan") -> Any:
        if name in given:
            value, source, reason = getattr(cfg, name), "option", "given explicitly"
        choices[name] = {"value": value, "source": source, "reason": reason}
        return value

    volumes = fp.get("dims") == 3
    n_train = _plan_split(choose, fp, cfg, volumes)
    rules.plan_channels(choose, fp, info)
    multiple = rules.size_multiple_of(cfg)
    size = rules.plan_size(choose, fp, info, volumes, multiple)
    budgeted = "budget" in given
    _plan_schedule(choose, fp, cfg, n_train, size, volumes, budgeted)
    rules.plan_budget(choose, given)
    plan = {
        "fingerprint": fp,
        "probe": NO_TIMING,
        "choices": choices,
        "defaults": rules.fixed_defaults(cfg, PLANNED),
        "n_train_planned": n_train,
        "model": cfg.model,
        "task": cfg.task,
    }
    if budgeted:
        plan["budget_s"] = parse_duration(cfg.budget)
        choices["budget"]["note"] = BUDGET_NOTE
        plan["budget"] = {"source": "option", "value": cfg.budget, "note": BUDGET_NOTE}
    return plan


def _plan_schedule(choose, fp: dict, cfg: TrainConfig, n_train: int, size, volumes: bool, budgeted: bool):
    """Patch size (3D), batch size, learning rate, augmentation and epochs."""
    if volumes:
        patch = rules.plan_patch(choose, fp, cfg, rules.size_multiple_of(cfg, volumes=True))
        batch = rules.plan_batch_3d(choose, patch, n_train, cfg.samples_per_volume)
    else:
        choose("patch_size", None, "2D images: the whole image at the input size, no patches")
        batch = rules.plan_batch(choose, n_train)
    choose(
        "lr",
        cfg.resolved_lr,
        f"the {cfg.optimizer} default for a one-cycle schedule at batch {FIXED_BATCH} (peak learning rate)",
    )
    rules.plan_augment(choose, n_train, size)
    if volumes:
        rules.plan_epochs_3d(choose, n_train, cfg.samples_per_volume, batch, budgeted)
    else:
        rules.plan_epochs(choose, n_train, size, budgeted)


#: What a budgeted run's plan says (plans.json → budget and choices.budget).
BUDGET_NOTE = (
    "--budget given: this run's epoch count depends on the machine (a probe and the measured epoch times "
    "fit the epochs to the budget), so another run of the same plan may train a different number of epochs"
)


def _plan_split(choose, fp: dict, cfg: TrainConfig, volumes: bool) -> int:
    """The validation share and ``--final``; returns the planned number of training cases."""
    pool, has_val = fp["n_labelled_pool"], fp["has_val_split"]
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
    choose(
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
    return n_train


def fixed_defaults(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """The values the plan does not choose, with the reason for each."""
    return rules.fixed_defaults(cfg, PLANNED)


def estimate(cfg: TrainConfig, info: ModelInfo, plan: dict[str, Any]) -> dict[str, Any]:
    """How long the planned run takes on this machine (a few seconds of timing; never part of the plan)."""
    return estimate_run(cfg.replace(**_values(cfg, plan)), info, plan)


def _values(cfg: TrainConfig, plan: dict[str, Any]) -> dict[str, Any]:
    return {k: c["value"] for k, c in plan["choices"].items() if getattr(cfg, k, None) is None}


def apply_plan(cfg: TrainConfig, plan: dict[str, Any]) -> TrainConfig:
    """``cfg`` with the plan's values filled in where ``cfg`` leaves a field open (a value given now wins,
    e.g. a larger ``--epochs`` on ``--resume``)."""
    return cfg.replace(**_values(cfg, plan))


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
        probe: kept for compatibility: the plan never times anything (``medlens plan`` prints a time
            estimate apart from it, see :func:`estimate`).
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
