"""Segmentation networks, 2D and 3D through ``spatial_dims``: unet, resunet, basicunet, segresnet.

Every factory is ``factory(spatial_dims, in_channels, num_classes, image_size, **options)`` and returns a
module whose forward maps (N, in_channels, *spatial) to logits (N, num_classes, *spatial); background is
class 0 (softmax over classes, e.g. with MONAI's ``DiceCELoss(softmax=True, to_onehot_y=True)``).
Each spatial side of the input must be a multiple of :func:`size_multiple` (pad with MONAI's
``DivisiblePad``). Options every model takes: ``dropout``, ``weights`` (path to a state dict),
``pretrained`` (only False: no segmentation weights ship offline).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.layers.factories import Conv
from monai.networks.nets import BasicUNet, SegResNet, UNet
from torch import nn

from medlens.errors import MedlensError
from medlens.io.guard import first_line, load_torch_file
from medlens.models.registry import register_model

COMMON = {"dropout": 0.0, "weights": None, "pretrained": False}
SPECIFIC = {
    "unet": {"channels": (16, 32, 64, 128, 256), "num_res_units": 2, "norm": "batch"},
    "resunet": {"channels": (16, 32, 64, 128, 256), "norm": "batch"},
    "basicunet": {"features": (32, 32, 64, 128, 256, 32)},
    "segresnet": {"init_filters": 16, "blocks_down": (1, 2, 2, 4), "blocks_up": (1, 1, 1)},
}


class ResUNet(nn.Module):
    """Residual U-Net: residual blocks in the encoder, bottleneck and decoder, 1×1 conv at the end.

    Each encoder level is a MONAI ``ResidualUnit`` (two conv-norm-act subunits plus a skip connection; levels
    after the first downsample by 2 with a strided convolution); the deepest level is the bottleneck. Each
    decoder level upsamples with a 2×2 transposed convolution, concatenates the encoder features of the same
    resolution and applies another ``ResidualUnit``. A 1×1 convolution maps the first level's features to
    the class logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: number of classes (logits).
        channels: feature widths per level, the last one the bottleneck.
        norm: normalisation ("batch", "instance", ...).
        dropout: dropout inside the residual units.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: tuple[int, ...] = (16, 32, 64, 128, 256),
        norm: str = "batch",
        dropout: float = 0.0,
    ):
        super().__init__()
        kw = {"spatial_dims": spatial_dims, "norm": norm, "dropout": dropout, "subunits": 2}
        widths = (in_channels, *channels)
        self.encoder = nn.ModuleList(
            ResidualUnit(in_channels=widths[i], out_channels=widths[i + 1], strides=1 if i == 0 else 2, **kw)
            for i in range(len(channels))
        )
        self.up = nn.ModuleList(
            Convolution(
                spatial_dims,
                channels[i + 1],
                channels[i],
                strides=2,
                kernel_size=2,
                padding=0,
                output_padding=0,
                is_transposed=True,
                norm=norm,
            )
            for i in reversed(range(len(channels) - 1))
        )
        self.decoder = nn.ModuleList(
            ResidualUnit(in_channels=2 * channels[i], out_channels=channels[i], **kw)
            for i in reversed(range(len(channels) - 1))
        )
        self.head = Conv[Conv.CONV, spatial_dims](channels[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, out_channels, *spatial)."""
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        x = skips.pop()  # bottleneck output
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def _options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    return check_options(name, {**COMMON, **SPECIFIC[name]}, options)


def check_options(name: str, allowed: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """``allowed`` (the defaults) updated with ``options``; unknown names, ``pretrained`` and a dropout
    outside [0, 1) are refused with a message naming the model."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise MedlensError(
            f"unknown option {unknown[0]!r} for model {name!r}: allowed options are {', '.join(allowed)}"
        )
    opts = {**allowed, **options}
    if opts["pretrained"]:
        raise MedlensError(
            f"model {name!r} has no offline pretrained weights: pass weights=PATH to a "
            "state dict saved from the same architecture, or train from scratch"
        )
    if not 0.0 <= float(opts["dropout"]) < 1.0:
        raise MedlensError(f"dropout of model {name!r} must be in [0, 1), got {opts['dropout']!r}")
    return opts


def with_weights(model: nn.Module, name: str, opts: dict[str, Any]) -> nn.Module:
    """``model`` with the state dict at ``opts["weights"]`` loaded (weights_only), or as it is when None."""
    if opts["weights"] is not None:
        try:
            state = load_torch_file(opts["weights"], "weights file")
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            model.load_state_dict(state)
        except (OSError, RuntimeError, KeyError, AttributeError, TypeError) as err:
            raise MedlensError(
                f"cannot load weights {opts['weights']} into model {name!r}: {first_line(err)}"
            ) from err
    return model


@register_model(
    "unet",
    "MONAI UNet, 5 levels (16-256 channels), 2 residual units per level (2D/3D)",
    task="segmentation",
    default_size=128,
    cam_layer="model.1.submodule.1.submodule.1.submodule.1.submodule",  # bottleneck (default 5 levels)
)
def unet(spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any) -> nn.Module:
    """MONAI ``UNet``, stride-2 downsampling between ``channels`` levels (``num_res_units`` 0 = plain)."""

    opts = _options("unet", options)
    channels = tuple(opts["channels"])
    model = UNet(
        spatial_dims,
        in_channels,
        num_classes,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=int(opts["num_res_units"]),
        norm=opts["norm"],
        dropout=float(opts["dropout"]),
    )
    return with_weights(model, "unet", opts)


@register_model(
    "resunet",
    "residual U-Net: residual blocks in encoder, bottleneck and decoder, 1x1 conv output (2D/3D)",
    task="segmentation",
    default_size=128,
    cam_layer="encoder.4",  # bottleneck: the deepest encoder level (default 5 levels)
)
def resunet(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> nn.Module:
    """:class:`ResUNet` with ``channels`` widths per level."""
    opts = _options("resunet", options)
    model = ResUNet(
        spatial_dims,
        in_channels,
        num_classes,
        channels=tuple(opts["channels"]),
        norm=opts["norm"],
        dropout=float(opts["dropout"]),
    )
    return with_weights(model, "resunet", opts)


@register_model(
    "basicunet",
    "MONAI BasicUNet: the classic two-conv U-Net, 5 levels (2D/3D)",
    task="segmentation",
    default_size=128,
    cam_layer="down_4",  # bottleneck: the deepest encoder level
)
def basicunet(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> nn.Module:
    """MONAI ``BasicUNet`` with ``features`` (six widths: five levels plus the last decoder)."""

    opts = _options("basicunet", options)
    model = BasicUNet(
        spatial_dims,
        in_channels,
        num_classes,
        features=tuple(opts["features"]),
        dropout=float(opts["dropout"]),
    )
    return with_weights(model, "basicunet", opts)


@register_model(
    "segresnet",
    "MONAI SegResNet: residual encoder, light decoder (BraTS 2018 winner; 2D/3D)",
    task="segmentation",
    default_size=128,
    cam_layer="down_layers.3",  # deepest encoder level (default blocks_down with 4 levels)
)
def segresnet(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> nn.Module:
    """MONAI ``SegResNet`` (group norm with 8 groups: ``init_filters`` must be a multiple of 8)."""

    opts = _options("segresnet", options)
    if int(opts["init_filters"]) % 8:
        raise MedlensError(
            f"init_filters of model 'segresnet' must be a multiple of 8, got {opts['init_filters']}"
        )
    model = SegResNet(
        spatial_dims,
        init_filters=int(opts["init_filters"]),
        in_channels=in_channels,
        out_channels=num_classes,
        dropout_prob=float(opts["dropout"]) or None,
        blocks_down=tuple(opts["blocks_down"]),
        blocks_up=tuple(opts["blocks_up"]),
    )
    return with_weights(model, "segresnet", opts)


def size_multiple(name: str, **options: Any) -> int:
    """What every spatial side of the input must be a multiple of for model ``name`` with ``options``."""
    if name not in SPECIFIC:
        raise MedlensError(f"{name!r} is not a segmentation model; use one of {', '.join(SPECIFIC)}")
    opts = {**SPECIFIC[name], **options}
    levels = {
        "unet": lambda: len(opts["channels"]) - 1,
        "resunet": lambda: len(opts["channels"]) - 1,
        "basicunet": lambda: 4,
        "segresnet": lambda: len(opts["blocks_down"]) - 1,
    }[name]()
    return int(math.pow(2, levels))
