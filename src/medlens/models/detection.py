"""``boxnet``: a from-scratch single-box regressor (backbone + 4-number head), 2D.

Global average pooling throws away where things are, which is what a box needs; so the backbone's last
feature map is pooled only down to a ``grid`` x ``grid`` map and flattened, and an MLP maps it to 4 numbers.
:mod:`medlens.tasks.detection` reads them as a sigmoid-squashed (centre x, centre y, width, height).
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from medlens.models.cnn import ResidualStage, conv_bn
from medlens.models.registry import register_model
from medlens.models.segmentation import check_options, with_weights

OPTIONS = {
    "widths": (32, 64, 128),
    "grid": 8,
    "hidden": 256,
    "dropout": 0.0,
    "weights": None,
    "pretrained": False,
}


class BoxNet(nn.Module):
    """Stride-2 stem + residual stages → (grid x grid) map → flatten → MLP → 4 outputs.

    Args:
        spatial_dims: 2 (boxes are 2D).
        in_channels: input channels.
        num_outputs: 4.
        widths: stage widths (each stage halves the resolution).
        grid: side of the pooled feature map that is flattened.
        hidden: width of the MLP.
        dropout: dropout before the last layer.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_outputs: int = 4,
        widths=(32, 64, 128),
        grid: int = 8,
        hidden: int = 256,
        dropout: float = 0.0,
    ):
        super().__init__()
        stem = 24
        self.stem = nn.Sequential(conv_bn(spatial_dims, in_channels, stem, stride=2), nn.ReLU(inplace=True))
        chans = (stem, *widths)
        self.stages = nn.Sequential(
            *[ResidualStage(spatial_dims, chans[i], chans[i + 1]) for i in range(len(widths))]
        )
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](grid)
        self.squeeze = nn.Sequential(conv_bn(spatial_dims, widths[-1], 32, kernel=1), nn.ReLU(inplace=True))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * grid**spatial_dims, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, 4)."""
        return self.head(self.squeeze(self.pool(self.stages(self.stem(x)))))


@register_model(
    "boxnet",
    "single-box regressor: residual CNN, 8x8 feature grid, MLP head (detection, 2D)",
    task="detection",
    default_size=128,
    cam_layer="stages.2",  # last residual stage (128 channels, 1/16 of the input), before the grid pooling
)
def boxnet(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> nn.Module:
    """:class:`BoxNet`; ``num_classes`` is the number of outputs (4 box numbers)."""

    opts = check_options("boxnet", OPTIONS, options)
    model = BoxNet(
        spatial_dims,
        in_channels,
        num_classes,
        widths=tuple(opts["widths"]),
        grid=int(opts["grid"]),
        hidden=int(opts["hidden"]),
        dropout=float(opts["dropout"]),
    )
    return with_weights(model, "boxnet", opts)
