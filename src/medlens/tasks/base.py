"""The hooks the shared loop (:class:`medlens.training.module.LitModel`) calls; a task overrides what differs.

A task owns four steps of every batch and epoch:

- ``prepare_batch``: the tensors of a loader batch → model-ready tensors (normalise, augment jointly with the
  targets), on the model's device;
- ``training_loss``: the loss of one prepared batch;
- ``validation_outputs``: per-case tensors of one validation batch (concatenated over the epoch);
- ``validation_metrics``: the epoch's metrics from those outputs (``val_*`` names).

The defaults are single-label classification with batches ``(images, labels)``.
"""

from __future__ import annotations

import torch

from medlens.data.spec import PreprocessingSpec


def normalize(x: torch.Tensor, spec: PreprocessingSpec) -> torch.Tensor:
    """uint8 batch (N, C, H, W) → float, scaled to [0, 1], then standardised: with the spec's mean/std, or
    (``spec.intensity == "image"``) each image's channels over their own non-zero pixels."""
    if spec.intensity == "image":
        return standardize_nonzero(x.float() / 255.0, first_spatial_dim=2)
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std


def standardize_nonzero(x: torch.Tensor, first_spatial_dim: int = 1) -> torch.Tensor:
    """Standardise every channel over its non-zero voxels (dims from ``first_spatial_dim`` on); zeros stay 0.

    MRI scanners and exports differ in intensity scale from patient to patient (LGG: some patients' FLAIR
    tumour is as dark as others' normal brain), which one dataset-wide mean/std cannot undo. This is the rule
    of MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)`` and nnU-Net's for MRI, written as one
    vectorised pass: MONAI's per-channel boolean indexing took ~10x longer.
    """
    inside = x != 0
    dims = tuple(range(first_spatial_dim, x.dim()))
    count = inside.sum(dims, keepdim=True).clamp(min=1)
    mean = (x * inside).sum(dims, keepdim=True) / count
    std = ((((x - mean) * inside) ** 2).sum(dims, keepdim=True) / count).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel is only centred
    return torch.where(inside, (x - mean) / std, torch.zeros_like(x)).contiguous()


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """channels_last is ~1.4x faster for 2D convolutions on CPU; 3D batches stay as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class Task:
    """Base of every task: classification-shaped defaults for the loop's hooks."""

    name = "task"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def epoch_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def prepare_batch(self, batch, spec: PreprocessingSpec, augment=None, gen: torch.Generator | None = None):
        """Normalise (and, while training, augment) a batch ``(images, targets)``."""
        from medlens.data.augment import augment_batch

        x, y = batch
        x = normalize(x, spec)
        if augment is not None:
            x = augment_batch(x, augment, gen)
        return channels_last(x), y

    def training_loss(self, model: torch.nn.Module, batch) -> tuple[torch.Tensor, int]:
        """Loss of one prepared batch and its size (for epoch averaging)."""
        x, y = batch
        return self.loss(model(x), y), len(y)

    def validation_outputs(self, model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
        """Per-case tensors of one prepared validation batch."""
        x, y = batch
        return {"output": model(x).detach(), "target": y}

    def validation_metrics(self, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        """Epoch metrics from the concatenated validation outputs."""
        return self.epoch_metrics(outputs["output"], outputs["target"])
