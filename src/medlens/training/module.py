"""The Lightning module: a short skeleton of named hooks; the task supplies batches, loss and metrics."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from medlens.data.augment import AugmentSpec
from medlens.data.spec import PreprocessingSpec
from medlens.tasks.base import normalize  # noqa: F401  (re-exported: predict and older callers use it)
from medlens.training.config import TrainConfig


class LitModel(L.LightningModule):
    """Wraps any registry model for training with the shared loop; ``task`` owns what differs per task."""

    def __init__(self, model: torch.nn.Module, task, spec: PreprocessingSpec, config: TrainConfig):
        super().__init__()
        self.model, self.task, self.spec, self.config = model, task, spec, config
        strength = 1.0 if config.augment_strength is None else config.augment_strength
        self.augment = AugmentSpec().scaled(strength) if config.augment and strength > 0 else None
        self._gen = torch.Generator().manual_seed(config.seed)
        self._mix_rng = np.random.default_rng(config.seed)  # mixup's Beta draws
        self._val_outputs: list[dict[str, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        augment = self.augment if self.trainer.training else None
        batch = self.task.prepare_batch(batch, self.spec, augment, self._gen)
        if self.trainer.training and self.config.progressive and self._early_half():
            x, *rest = batch  # progressive resizing: the first half of the epochs at 3/4 of the input size
            side = max(16, int(x.shape[-1] * 0.75) // 8 * 8)
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            batch = (x.contiguous(memory_format=torch.channels_last), *rest)
        return batch

    def _early_half(self) -> bool:
        return self.current_epoch < (self.trainer.max_epochs or 0) // 2

    def training_step(self, batch, batch_idx: int):
        if self.config.mixup > 0:
            loss, n = self._mixup_loss(batch)
        else:
            loss, n = self.task.training_loss(self.model, batch)
        # sync_dist: under DDP the epoch's loss is the mean over every process's batches (a no-op on one)
        self.log(
            "train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True
        )
        return loss

    def _mixup_loss(self, batch) -> tuple[torch.Tensor, int]:
        """Mixup (Zhang et al. 2018): a convex mix of the batch with a shuffled copy, and of their losses."""
        x, y = batch[0], batch[1]
        lam = float(self._mix_rng.beta(self.config.mixup, self.config.mixup))
        perm = torch.randperm(len(y), generator=self._gen).to(x.device)
        out = self.model(lam * x + (1 - lam) * x[perm])
        return lam * self.task.loss(out, y) + (1 - lam) * self.task.loss(out, y[perm]), len(y)

    def validation_step(self, batch, batch_idx: int):
        self._val_outputs.append(self.task.validation_outputs(self.model, batch))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        merged = {}
        for key in self._val_outputs[0]:
            local = torch.cat([o[key] for o in self._val_outputs])
            gathered = self.all_gather(local)
            merged[key] = gathered.reshape(-1, *local.shape[1:]) if self.trainer.world_size > 1 else gathered
        self._val_outputs.clear()
        # every process gathered the same outputs, so every process logs the same metrics: checkpointing and
        # early stopping decide alike on all of them
        for name, value in self.task.validation_metrics(merged).items():
            self.log(name, value, prog_bar=name != "val_loss", sync_dist=False)

    def configure_optimizers(self):
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            opt = torch.optim.SGD(
                params,
                lr=cfg.resolved_lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                nesterov=cfg.momentum > 0,
            )
        else:
            opt = torch.optim.AdamW(params, lr=cfg.resolved_lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        total = max(1, self.trainer.estimated_stepping_batches)
        if cfg.scheduler == "onecycle" and total >= 20:  # one-cycle needs a few steps per phase
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=cfg.resolved_lr, total_steps=total, pct_start=0.25
            )
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


#: The classification-era name, kept for callers that import it.
LitClassifier = LitModel
