"""Lightning callbacks of the shared loop."""

from __future__ import annotations

import time

import lightning as L


class HistoryCallback(L.Callback):
    """Collects one row per epoch: train/val metrics, learning rate and epoch seconds (→ history.csv)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
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

    def train_images(self, n_train: int) -> int:
        return n_train * len(self.rows)
