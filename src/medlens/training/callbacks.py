"""Lightning callbacks of the shared loop."""

from __future__ import annotations

import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from medlens.utils.progress import report


class HistoryCallback(L.Callback):
    """Collects one row per epoch: train/val metrics, learning rate and epoch seconds (→ history.csv)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.restored = 0  # rows that came from the checkpoint of an interrupted run
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        row = {"epoch": trainer.current_epoch + 1, "seconds": round(time.perf_counter() - self._t0, 2)}
        for key, value in trainer.callback_metrics.items():
            row[key] = round(float(value), 5)
        opt = trainer.optimizers[0] if trainer.optimizers else None
        if opt is not None:
            row["lr"] = float(opt.param_groups[0]["lr"])
        self.rows.append(row)
        report("train", epochs=trainer.max_epochs, **row)

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: ``--resume`` continues history.csv where the interrupted run stopped."""
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self.restored = len(self.rows)

    def train_images(self, n_train: int) -> int:
        """Training images seen in this session (restored epochs were timed by the interrupted one)."""
        return n_train * (len(self.rows) - self.restored)


class RngStateCallback(L.Callback):
    """Saves the random streams of a run in each checkpoint and restores them on resume.

    The global torch (and CUDA), numpy and Python streams, and the named ``sources``: the train loader's
    shuffle ``torch.Generator``, the augmentation generator, the numpy ``RandomState`` of a MONAI patch
    sampler. A resumed run then draws exactly what the uninterrupted run drew. States are stored as tensors
    and plain lists, so the checkpoint still loads with ``torch.load(..., weights_only=True)``.
    """

    def __init__(self, sources: dict[str, Any] | None = None) -> None:
        self.sources = {k: v for k, v in (sources or {}).items() if v is not None}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _np_state(np.random.get_state()),
            "python": _py_state(random.getstate()),
            "sources": {},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        for name, src in self.sources.items():
            if isinstance(src, torch.Generator):
                state["sources"][name] = src.get_state()
            elif isinstance(src, np.random.RandomState):
                state["sources"][name] = _np_state(src.get_state())
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        np.random.set_state(_np_unstate(state_dict["numpy"]))
        random.setstate(_py_unstate(state_dict["python"]))
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        for name, saved in state_dict.get("sources", {}).items():
            src = self.sources.get(name)
            if isinstance(src, torch.Generator):
                src.set_state(saved)
            elif isinstance(src, np.random.RandomState):
                src.set_state(_np_unstate(saved))


def _np_state(state: tuple) -> list:
    kind, keys, pos, has_gauss, gauss = state
    return [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)]


def _np_unstate(state: list) -> tuple:
    kind, keys, pos, has_gauss, gauss = state
    return kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss


def _py_state(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_unstate(state: list) -> tuple:
    version, internal, gauss = state
    return version, tuple(internal), gauss


def rng_sources(pl_module, train_loader) -> dict[str, Any]:
    """The random streams of a run besides the global ones: augmentation, shuffling, patch sampling."""
    sources: dict[str, Any] = {
        "augment": getattr(pl_module, "_gen", None),
        "shuffle": getattr(train_loader, "generator", None),
    }
    crop = getattr(getattr(train_loader, "dataset", None), "crop", None)  # 3D patches: a MONAI transform
    for name, obj in (("patches", crop), ("patches.cropper", getattr(crop, "cropper", None))):
        sources[name] = getattr(obj, "R", None)
    return sources


class BudgetCallback(L.Callback):
    """Keeps a time-budgeted schedule on time: from the third epoch on, the measured epoch time (training
    and validation) re-fits the number of epochs to the budget left, and the one-cycle (or cosine) schedule
    is stretched or compressed to end with them. The probe before training only gives the first guess: it
    cannot see the loop's own overhead, and a shared machine's speed changes while a run trains.

    Args:
        budget_s: the training budget in seconds.
        most: the epoch cap (the plan's, or ``--epochs``).
        share: the part of the budget planned for epochs (the rest absorbs the last checkpoint).
    """

    def __init__(self, budget_s: float, most: int, share: float) -> None:
        self.budget_s, self.most, self.share = budget_s, most, share
        self.changes: list[dict] = []
        self._times: list[float] = []
        self._start = self._epoch_start = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.monotonic()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        now, epoch = time.monotonic(), trainer.current_epoch
        if epoch >= 2:  # the first epoch also builds the kernels: not typical
            self._times.append(now - self._epoch_start)
        self._epoch_start = now
        if epoch < 2 or not trainer.max_epochs:
            return
        recent = sorted(self._times[-3:])
        last = recent[len(recent) // 2]  # the median of the last three: one slow epoch does not re-plan
        left = self.budget_s * self.share - (now - self._start)
        target = int(min(self.most, max(epoch + 1, epoch + left // max(last, 1e-6))))
        if target == trainer.max_epochs:
            return
        steps = trainer.num_training_batches
        if not _retarget(trainer, target * steps if steps != float("inf") else None):
            return
        self.changes.append({"at_epoch": epoch, "epoch_s": round(last, 2), "epochs": target})
        trainer.fit_loop.max_epochs = target

    def state_dict(self) -> dict[str, Any]:
        return {"changes": list(self.changes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.changes = list(state.get("changes", []))


def _retarget(trainer, total: int | None) -> bool:
    """Re-plan the step scheduler for ``total`` steps; False when there is none it can re-plan."""
    if total is None:
        return False
    for config in trainer.lr_scheduler_configs:
        sched = config.scheduler
        if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
            if sched.last_epoch >= total - 1:
                return False
            old = sched.total_steps
            sched.total_steps = total
            for phase in sched._schedule_phases:  # end steps scale with the cycle's length
                phase["end_step"] = (phase["end_step"] + 1) * total / old - 1
            sched._schedule_phases[-1]["end_step"] = total - 1
        elif isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR):
            sched.T_max = total
    return True
