"""The Lightning module: a short skeleton of named hooks; the task supplies loss and metrics."""

from __future__ import annotations

import lightning as L
import torch

from medlens.data.spec import PreprocessingSpec
from medlens.train.augment import AugmentSpec, augment_batch
from medlens.train.config import TrainConfig


def normalize(x: torch.Tensor, spec: PreprocessingSpec) -> torch.Tensor:
    """uint8 batch (N, C, H, W) → float, scaled to [0, 1], then standardised with the spec's mean/std."""
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std


class LitClassifier(L.LightningModule):
    """Wraps any registry model for training with the shared loop."""

    def __init__(self, model: torch.nn.Module, task, spec: PreprocessingSpec, config: TrainConfig):
        super().__init__()
        self.model, self.task, self.spec, self.config = model, task, spec, config
        self.augment = AugmentSpec() if config.augment else None
        self._gen = torch.Generator().manual_seed(config.seed)
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        x = normalize(x, self.spec)
        if self.trainer.training and self.augment is not None:
            x = augment_batch(x, self.augment, self._gen)
        if x.dim() == 4:  # channels_last is ~1.4x faster for 2D convs on CPU
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        loss = self.task.loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx: int):
        x, y = batch
        self._val_logits.append(self(x).detach())
        self._val_targets.append(y)

    def on_validation_epoch_end(self) -> None:
        if not self._val_logits:
            return
        logits = self.all_gather(torch.cat(self._val_logits)).reshape(-1, len(self.task.class_names))
        targets = self.all_gather(torch.cat(self._val_targets)).reshape(-1)
        self._val_logits.clear()
        self._val_targets.clear()
        for name, value in self.task.epoch_metrics(logits, targets).items():
            self.log(name, value, prog_bar=name != "val_loss", sync_dist=False, rank_zero_only=True)

    def configure_optimizers(self):
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=cfg.resolved_lr, momentum=cfg.momentum,
                                  weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
        else:
            opt = torch.optim.AdamW(params, lr=cfg.resolved_lr, weight_decay=cfg.weight_decay)
        if cfg.scheduler == "none":
            return opt
        total = max(1, self.trainer.estimated_stepping_batches)
        if cfg.scheduler == "onecycle" and total >= 20:  # one-cycle needs a few steps per phase
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.resolved_lr, total_steps=total,
                                                        pct_start=0.25)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
