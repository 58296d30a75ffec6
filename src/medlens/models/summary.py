"""Parameter counts and multiply-adds of a model, in total and per top-level module."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medlens.errors import MedlensError
from medlens.io.guard import first_line
from medlens.models.registry import create_model, get_model_info


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

    spatial = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    check_input(name, spatial, in_channels)
    model = create_model(
        name,
        num_classes=num_classes,
        in_channels=in_channels,
        spatial_dims=len(spatial),
        image_size=spatial[0],
        **options,
    )
    try:
        return {"model": name, **model_summary(model, (1, in_channels, *spatial))}
    except RuntimeError as err:  # a size the network's downsampling cannot take (U-Nets need multiples of 16)
        side = "x".join(map(str, spatial))
        first = first_line(err)
        raise MedlensError(
            f"model {name} cannot run on a {side} input ({first}); try its default size "
            f"{get_model_info(name).default_size} or a multiple of 32"
        ) from err


#: Largest input side: the range `medlens train --image-size` takes (2D), and 3D patch sides.
MAX_SIDE = {2: 1024, 3: 512}
#: Smallest side `medlens summary` offers (the library accepts any positive side, e.g. tiny test inputs).
CLI_MIN_SIDE = 8
MAX_CHANNELS = 16


def check_input(name: str, spatial: tuple[int, ...], in_channels: int, min_side: int = 1) -> None:
    """Refuse input sizes and channel counts that cannot run (or would allocate gigabytes) in one line."""

    if len(spatial) not in MAX_SIDE:
        raise MedlensError(f"input size needs 2 or 3 sides, got {spatial}")
    low, high = min_side, MAX_SIDE[len(spatial)]
    for side in spatial:
        if isinstance(side, bool) or not isinstance(side, int) or not low <= side <= high:
            raise MedlensError(
                f"--input-size must be between {low} and {high} pixels for a {len(spatial)}D "
                f"input, got {side}"
            )
    if (
        isinstance(in_channels, bool)
        or not isinstance(in_channels, int)
        or not 1 <= in_channels <= MAX_CHANNELS
    ):
        raise MedlensError(f"--channels must be between 1 and {MAX_CHANNELS}, got {in_channels}")
    needed = get_model_info(name).channels
    if needed and in_channels != needed:
        raise MedlensError(f"model {name} needs {needed}-channel input, got --channels {in_channels}")
