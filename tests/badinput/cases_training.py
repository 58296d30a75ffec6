"""Hostile-input cases of the second probe: training (see docs/robustness.md, "Second probe: training")."""

from __future__ import annotations

import numpy as np

from badinput import make
from badinput.cases import TRAIN, Ctx, _interrupted, case, one_line_error, sources_kept


class Pickled:
    """A custom class: a checkpoint holding one can only be read by unpickling code."""

    def __init__(self) -> None:
        self.weights = [0.0] * 4


def _damaged(ctx: Ctx, how: str) -> list:
    """``train --resume`` of an interrupted run whose last checkpoint is damaged in the way ``how`` names."""
    import torch

    run = _interrupted(ctx)
    ckpt = ctx.tmp / "run.partial" / "checkpoints" / "last.ckpt"
    if how == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(4096)}, "epoch": 0}, ckpt)
        make.cut(ckpt, 0.5)
    elif how == "random":
        ckpt.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "pickled":
        torch.save({"state_dict": {}, "callbacks": Pickled()}, ckpt)
    else:
        ckpt.write_bytes(b"")
    return ["train", ctx.data(), "-o", run, *TRAIN, "--resume"]


def _names_checkpoint_and_cure(ctx: Ctx, out: str) -> None:
    one_line_error(ctx, out)
    assert "weights_only" not in out and "Aborted" not in out, out
    assert "without --resume" in out and "last.ckpt" in out, out
    sources_kept("run.partial/checkpoints/last.ckpt")(ctx, out)


for _how in ("truncated", "random", "pickled", "zero-byte"):
    case(f"trn-resume-checkpoint-{_how}", 2, "cannot resume", check=_names_checkpoint_and_cure)(
        lambda ctx, h=_how: _damaged(ctx, h)
    )
