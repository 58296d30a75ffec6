"""Parameter counts and multiply-adds of a model, in total and per top-level module."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def _count(params) -> tuple[int, int]:
    params = list(params)
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def model_summary(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Count parameters and multiply-adds for one forward pass.

    Multiply-adds (MACs) are torch's FLOP count (``FlopCounterMode``: matmuls and convolutions) divided by
    2; element-wise work (BatchNorm, activations, bias adds) is not counted, as is customary.

    Args:
        model: the network; it is run once in eval mode without gradients (its mode is restored).
        input_shape: full input shape including the batch, e.g. ``(1, 1, 128, 128)``.

    Returns:
        ``{"total_params", "trainable_params", "macs", "input_shape", "modules": [{"name", "type", "params",
        "trainable_params", "macs"}, ...]}`` with one entry per direct child of ``model``.
    """
    was_training = model.training
    device = next(model.parameters(), torch.empty(0)).device
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    modules = []
    for name, child in model.named_children():
        total, trainable = _count(child.parameters())
        flops = sum(counts.get(f"{root}.{name}", {}).values())
        modules.append(
            {
                "name": name,
                "type": type(child).__name__,
                "params": total,
                "trainable_params": trainable,
                "macs": int(flops) // 2,
            }
        )
    total, trainable = _count(model.parameters())
    return {
        "total_params": total,
        "trainable_params": trainable,
        "macs": int(counter.get_total_flops()) // 2,
        "input_shape": list(input_shape),
        "modules": modules,
    }


def summarize(
    name: str, input_size: int | tuple[int, ...], in_channels: int = 1, num_classes: int = 2, **options: Any
) -> dict[str, Any]:
    """Build registry model ``name`` and summarise it for one input.

    Args:
        name: registry name.
        input_size: side in pixels (2D square) or a tuple of 2 or 3 spatial sizes (a 3D tuple builds the 3D
            model). Non-square tuples use their first side as ``image_size``.
        in_channels: input channels.
        num_classes: number of logits.
        **options: model options passed to :func:`medlens.models.create_model`.
    """
    from medlens.models.registry import create_model

    spatial = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    model = create_model(
        name,
        num_classes=num_classes,
        in_channels=in_channels,
        spatial_dims=len(spatial),
        image_size=spatial[0],
        **options,
    )
    return {"model": name, **model_summary(model, (1, in_channels, *spatial))}
