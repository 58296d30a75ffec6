"""A run's plan: made once (or reused on ``--resume`` and by the other DDP processes), written into the run as
``plans.json``, printed with the time it should take on this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from medlens.io.guard import image_limit
from medlens.training.config import TrainConfig


def plan_run(
    source, cfg: TrainConfig, info, partial: Path, *, resume: bool, child: bool, progress: bool
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """``cfg`` with the plan's values filled in (see :mod:`medlens.training.plans`), and the time estimate
    (``train.json`` → ``estimate``; None in the other DDP processes).

    plans.json is written into the run, and reused by ``--resume`` and by the other DDP processes so that
    every one trains alike. The estimate is made after the plan and never written into it.
    """
    # deferred: the plan's modules import torch, which a command that fails early never needs
    from medlens.training.plans import PLAN_FILE, apply_plan, estimate, make_plan, resolve_fixed, write_plan

    if not cfg.plan:
        return resolve_fixed(cfg), None  # no fingerprint: nothing to size an estimate with
    path = partial / PLAN_FILE
    if child:  # rank 0 writes the plan before it starts the other processes (torchrun: all at once)
        deadline = time.monotonic() + 600
        while not path.is_file() and time.monotonic() < deadline:
            time.sleep(0.5)
    if (resume or child) and path.is_file():
        plan = json.loads(path.read_text())
    else:
        with image_limit(cfg.max_image_mb):
            plan = make_plan(source, cfg, info)
        write_plan(partial, plan)
    planned = apply_plan(cfg, plan)
    if child:
        return planned, None
    guess = estimate(cfg, info, plan)
    if progress:
        print_plan(plan, guess)
    return planned, guess


def print_plan(plan: dict, guess: dict[str, Any] | None) -> None:
    """One line on stderr: the planned values, a budget only when given, and the time estimate."""
    from rich.console import Console

    c = plan["choices"]
    size = c["image_size"]["value"]
    patch = (c.get("patch_size") or {}).get("value")
    parts = [f"{size} px" if size else None, "patch " + "x".join(map(str, patch)) if patch else None]
    parts += [f"{c['channels']['value']} channel(s)", f"batch {c['batch_size']['value']}"]
    budget = c["budget"]["value"]
    parts += [f"up to {c['epochs']['value']} epochs, budget {budget} (given)" if budget else None]
    parts += [None if budget else f"{c['epochs']['value']} epochs"]
    parts += ["then a refit on train + val"] if c["final"]["value"] else []
    when = f"; {guess['text']} (an estimate)" if guess and guess.get("text") else ""
    Console(stderr=True).print(
        "plan: " + ", ".join(p for p in parts if p) + when + " (reasons in plans.json; any option overrides)",
        highlight=False,
    )
