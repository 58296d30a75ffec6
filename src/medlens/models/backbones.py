"""MONAI backbones (ResNet, DenseNet, EfficientNet) and a VGG19-BN, each as features + our head.

MONAI's networks are kept whole with their classification layer replaced by ``nn.Identity``, so their
state-dict names stay MONAI's (``backbone.<monai name>``) and torchvision/MONAI checkpoints load through
:mod:`medlens.models.weights`. ResNets use the torchvision stem (7x7 stride-2 conv, no bias in downsample
convs) so torchvision ImageNet weights fit. None of these ship weights offline: pass ``weights=PATH``.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.layers.factories import Conv, Norm, Pool
from monai.networks.nets import DenseNet121, EfficientNetBN, ResNet
from torch import nn

from medlens.models.classifier import Classifier, build_classifier, no_shipped_weights, resolve_options
from medlens.models.registry import register_model

VGG19_CONFIG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)


def _resnet(block: str, layers: list[int], spatial_dims: int, in_channels: int) -> ResNet:
    net = ResNet(
        block=block,
        layers=layers,
        block_inplanes=[64, 128, 256, 512],
        spatial_dims=spatial_dims,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        num_classes=1,
        feed_forward=False,
        bias_downsample=False,
    )
    return net


class VGGFeatures(nn.Module):
    """VGG19 with BatchNorm (2D or 3D) + global average pooling -> (N, 512).

    ``features`` follows torchvision's ``vgg19_bn.features`` layout (conv, bn, relu, ..., maxpool at the same
    indices), so its ImageNet weights load by name. The 4096-wide fully connected layers are left out: global
    pooling and our head replace them (they hold ~120 M of VGG's ~140 M parameters).
    """

    def __init__(self, spatial_dims: int, in_channels: int, config: tuple = VGG19_CONFIG):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2, ceil_mode=True))
                continue
            layers += [
                Conv[Conv.CONV, spatial_dims](channels, item, kernel_size=3, padding=1),
                Norm[Norm.BATCH, spatial_dims](item),
                nn.ReLU(inplace=True),
            ]
            channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.num_features = channels
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, 512)."""
        return self.avgpool(self.features(x)).flatten(1)


def _options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    # Checked before building the network, so a typo fails fast.
    opts = resolve_options(name, options)
    no_shipped_weights(name, opts)
    return opts


@register_model(
    "resnet18",
    "MONAI ResNet-18 (2D/3D), torchvision stem; weights=PATH loads torchvision/MONAI weights",
    cam_layer="backbone.layer4",  # last residual stage (512 channels, 1/32 of the input)
)
def resnet18(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """ResNet-18 features (512) + head."""
    opts = _options("resnet18", options)
    return build_classifier(_resnet("basic", [2, 2, 2, 2], spatial_dims, in_channels), 512, num_classes, opts)


@register_model(
    "resnet50",
    "MONAI ResNet-50 (2D/3D), torchvision stem; weights=PATH loads torchvision/MONAI weights",
    cam_layer="backbone.layer4",  # last residual stage (2048 channels, 1/32 of the input)
)
def resnet50(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """ResNet-50 features (2048) + head."""
    opts = _options("resnet50", options)
    return build_classifier(
        _resnet("bottleneck", [3, 4, 6, 3], spatial_dims, in_channels), 2048, num_classes, opts
    )


@register_model(
    "densenet121",
    "MONAI DenseNet-121 (2D/3D); weights=PATH loads torchvision/MONAI weights",
    # the ReLU after the last dense block and norm5 (1024 channels, 1/32), the layer global pooling reads
    cam_layer="backbone.class_layers.relu",
)
def densenet121(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """DenseNet-121 features (1024, after its final ReLU and global pooling) + head."""
    opts = _options("densenet121", options)
    net = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1, pretrained=False)
    net.class_layers.out = nn.Identity()
    return build_classifier(net, 1024, num_classes, opts)


@register_model(
    "efficientnet-b0",
    "MONAI EfficientNet-B0 (2D/3D, random init; lukemelas-named weights=PATH load)",
    # BatchNorm of the 1x1 head conv (1280 channels, 1/32); not ``_swish``: that module also runs on the stem
    cam_layer="backbone._bn1",
)
def efficientnet_b0(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """EfficientNet-B0 features (1280) + head (its own dropout and ``_fc`` are replaced by the head)."""
    opts = _options("efficientnet-b0", options)
    net = EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=1
    )
    net._dropout = nn.Identity()
    net._fc = nn.Identity()
    return build_classifier(net, 1280, num_classes, opts)


@register_model(
    "vgg19",
    "VGG-19 with BatchNorm (2D/3D) + global average pooling; torchvision vgg19_bn names",
    cam_layer="backbone.features.51",  # ReLU of the last conv, before the last max-pool (512 channels, 1/16)
)
def vgg19(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """VGG19-BN convolutional features (512) + head."""
    opts = _options("vgg19", options)
    net = VGGFeatures(spatial_dims, in_channels)
    return build_classifier(net, net.num_features, num_classes, opts)
