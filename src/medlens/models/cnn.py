"""``cnn-small``: a fast from-scratch CNN for CPUs, 2D or 3D through ``spatial_dims``.

Throughput decides the shape: a stride-2 stem halves the resolution before any wide layer (a full-resolution
first conv costs most of the time at 96-128 px), then four residual stages each halve it again. At 128 px,
1 channel, 2D the backbone costs about 62 M multiply-adds and has 1.2 M parameters. 2D models are returned
in channels-last memory format, which oneDNN convolutions on CPU run markedly faster.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

from medlens.errors import MedlensError
from medlens.models.classifier import Classifier, build_classifier, no_shipped_weights, resolve_options
from medlens.models.registry import register_model

STEM_WIDTH = 24
STAGE_WIDTHS = (32, 64, 128, 256)
STAGE_DEPTHS = (1, 1, 2, 2)  # extra blocks where the feature maps are small (cheap, adds capacity)


def conv_bn(spatial_dims: int, in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """Conv (no bias: BatchNorm follows) + BatchNorm, same padding."""
    return nn.Sequential(
        Conv[Conv.CONV, spatial_dims](in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        Norm[Norm.BATCH, spatial_dims](out_ch),
    )


class ResidualStage(nn.Module):
    """Downsample by 2 + two 3x3 convs with a shortcut (a ResNet basic block with a stride-2 first conv)."""

    def __init__(self, spatial_dims: int, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = conv_bn(spatial_dims, in_ch, out_ch, stride=2)
        self.conv2 = conv_bn(spatial_dims, out_ch, out_ch)
        # Shortcut: max-pool then 1x1 projection; cheaper than a strided 3x3 and keeps strong activations.
        self.shortcut = nn.Sequential(
            Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2, ceil_mode=True),
            conv_bn(spatial_dims, in_ch, out_ch, kernel=1),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, *S) -> (N, out, *ceil(S/2))."""
        out = self.conv2(self.act(self.conv1(x)))
        return self.act(out + self.shortcut(x))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity shortcut (same width, same size)."""

    def __init__(self, spatial_dims: int, ch: int):
        super().__init__()
        self.conv1 = conv_bn(spatial_dims, ch, ch)
        self.conv2 = conv_bn(spatial_dims, ch, ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class SmallCNN(nn.Module):
    """Feature extractor of ``cnn-small``: stem + 4 residual stages + global average pool -> (N, 256).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        widths: output width of each stage.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        widths: tuple[int, ...] = STAGE_WIDTHS,
        depths: tuple[int, ...] = STAGE_DEPTHS,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn(spatial_dims, in_channels, STEM_WIDTH, stride=stem_stride), nn.ReLU(inplace=True)
        )
        chans = (STEM_WIDTH, *widths)
        stages = []
        for i, depth in enumerate(depths):
            blocks = [ResidualStage(spatial_dims, chans[i], chans[i + 1])]
            blocks += [BasicBlock(spatial_dims, chans[i + 1]) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.num_features = widths[-1]
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, 256)."""
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # free for 1-channel input
        return self.pool(self.stages(self.stem(x))).flatten(1)


@register_model(
    "cnn-small",
    "fast from-scratch residual CNN for CPUs (2D/3D, ~60 M MACs at 128 px)",
    default_size=128,
    cam_layer="backbone.stages.3",  # last residual stage (256 channels, 1/32 of the input)
)
def cnn_small(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """Build ``cnn-small`` (any input size >= 16 px; ``image_size`` is not needed).

    Its own option ``stem_stride`` (2, or 1 for small images: the stem keeps full resolution, so a 28 px
    image still has 2x2 feature maps after the fourth stage instead of 1x1) comes through ``--model-arg``.
    """
    options = dict(options)
    stem_stride = options.pop("stem_stride", 2)
    if stem_stride not in (1, 2):
        raise MedlensError(f"option 'stem_stride' of model 'cnn-small' must be 1 or 2, got {stem_stride!r}")
    opts = resolve_options("cnn-small", options)
    no_shipped_weights("cnn-small", opts)
    backbone = SmallCNN(spatial_dims, in_channels, stem_stride=stem_stride)
    model = build_classifier(backbone, backbone.num_features, num_classes, opts)
    # Channels-last (NHWC) 2D convolutions train ~1.5x faster on CPU (oneDNN); .to() and state-dict
    # loading keep the layout, so predict and serve get it too.
    return model.to(memory_format=torch.channels_last) if spatial_dims == 2 else model
