"""How long a planned run will take on this machine: a short, bounded timing of a few training steps.

The estimate is printed and written to ``train.json`` → ``estimate``; it never changes the plan (a plan made
on a busy machine is the plan made on an idle one). It times a small batch of random tensors for at most
:data:`ESTIMATE_LIMIT_S` seconds, however slow the machine is at that moment, so it is only a guide.
"""

from __future__ import annotations

import time
from typing import Any

from medlens.data.augment import AugmentSpec, augment_batch
from medlens.models.registry import ModelInfo, create_model
from medlens.training.config import TrainConfig

#: The clock the estimate reads (a module attribute, so that a test can make the machine look slower).
clock = time.perf_counter
#: The estimate's wall-clock cap (seconds of timed steps, after model creation).
ESTIMATE_LIMIT_S = 3.0
#: Steps timed at most, and the batch they use at 128 px (scaled with the pixels, at most the run's batch:
#: small enough that a step fits in the cap on a busy machine, large enough that a small image's step is not
#: all per-step overhead).
ESTIMATE_STEPS, ESTIMATE_BATCH, WARM_STEPS = 8, 8, 2
#: A training epoch takes about this much longer than the bare steps timed here (the loop's own work and
#: validation; measured 1.5-1.7x on cnn-small at 28 and 128 px).
LOOP_OVERHEAD = 1.5


def steady_step_time(step, *, most: int = 16, limit_s: float = 40.0) -> tuple[float, int]:
    """Seconds per call of ``step()`` once steady: oneDNN builds its kernels over the first calls of a new
    shape (up to ~10 calls for bf16 on CPU), so calls continue until three in a row agree within 25 % (or
    ``most`` calls, or ``limit_s``). Returns (the median of the last three, calls made)."""
    times: list[float] = []
    while len(times) < most and sum(times) < limit_s:
        t0 = clock()
        step()
        times.append(clock() - t0)
        tail = times[-3:]
        if len(times) >= 4 and max(tail) <= 1.25 * min(tail):
            break
    tail = sorted(times[-3:])
    return tail[len(tail) // 2], len(times)


def estimate_run(cfg: TrainConfig, info: ModelInfo, plan: dict[str, Any]) -> dict[str, Any]:
    """The planned run's training time on this machine, from a few timed steps (never part of the plan).

    Returns:
        ``{"seconds", "text", "seconds_per_image", "steps_timed", "basis"}``, or ``{"error"}`` when the model
        cannot run at the planned settings (training then stops with its own message).
    """
    c = {k: v["value"] for k, v in plan["choices"].items()}
    volumes = plan["fingerprint"].get("dims") == 3
    side = c.get("image_size") or 128
    shape = tuple(c.get("patch_size") or (96, 96, 32)) if volumes else (side, side)
    channels = c.get("channels") or 1
    batch = 1 if volumes else int(min(c.get("batch_size") or 8, max(2, ESTIMATE_BATCH * (128 / side) ** 2)))
    try:
        per_image, steps = _time_per_image(cfg, info, shape, channels, batch)
    except Exception as err:  # e.g. a U-Net size that is not a multiple of 16: training says so itself
        return {"error": f"{type(err).__name__}: {err}"[:300]}
    n_train = plan["n_train_planned"] * (cfg.samples_per_volume if volumes else 1)
    epochs = int(c.get("epochs") or 1)
    seconds = LOOP_OVERHEAD * per_image * n_train * epochs
    if c.get("final"):
        seconds *= 1 + plan["fingerprint"]["n_labelled_pool"] / max(1, plan["n_train_planned"])
    if plan.get("budget_s"):
        seconds = min(seconds, plan["budget_s"])
    return {
        "seconds": round(seconds),
        "text": describe(seconds),
        "seconds_per_image": round(per_image, 5),
        "steps_timed": steps,
        "basis": f"the fastest of {steps} training steps of batch {batch} at "
        f"{'x'.join(map(str, shape))} (at most {ESTIMATE_LIMIT_S:g} s of them) at this machine's speed of "
        f"the moment, x{LOOP_OVERHEAD:g} for the loop's own work and validation, "
        f"x {n_train} {'patches' if volumes else 'images'} x {epochs} epochs; an estimate only, and never "
        "part of the plan",
    }


def describe(seconds: float) -> str:
    """ "about 12 min on this machine" / "about 40 s on this machine"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s on this machine"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min on this machine"
    return f"about {seconds / 3600:.1f} h on this machine"


def _time_per_image(
    cfg: TrainConfig, info: ModelInfo, shape: tuple, channels: int, batch: int
) -> tuple[float, int]:
    import torch

    from medlens.tasks.registry import get_task

    options = get_task(cfg.task).model_options(cfg)
    if "pretrained" in options:  # the estimate needs the shapes, not the weights
        options = {**options, "pretrained": False, "weights": None}
    model = create_model(
        cfg.model,
        num_classes=2,
        in_channels=channels,
        spatial_dims=len(shape),
        image_size=max(shape),
        **options,
    ).train()
    gen = torch.Generator().manual_seed(0)  # the run's own generators stay untouched
    bf16 = cfg.resolved_precision() == "bf16-mixed"

    def step(x) -> None:
        if cfg.augment and x.dim() == 4:
            x = augment_batch(x, AugmentSpec(), gen)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = sum(o.float().mean() for o in (out if isinstance(out, (tuple, list)) else [out]))
        loss.backward()
        model.zero_grad(set_to_none=True)

    x = torch.randn(batch, channels, *shape, generator=gen)
    start = clock()
    for _ in range(WARM_STEPS):  # untimed: they start the thread pool and build oneDNN's kernels (bf16: two)
        step(x)
        if clock() - start > ESTIMATE_LIMIT_S / 2:  # a busy machine: one warm-up step must do
            break
    times: list[float] = []
    while not times or (len(times) < ESTIMATE_STEPS and clock() - start < ESTIMATE_LIMIT_S):
        t0 = clock()
        step(x)
        times.append(clock() - t0)
    # bf16 kernels may still be built in the second step, and a busy machine is uneven: the fastest counts
    return min(times) / batch, len(times)
