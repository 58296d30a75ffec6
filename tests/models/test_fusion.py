"""Folding BatchNorm into the convolution before it keeps every registered network's outputs (eval mode)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medlens.models.fusion import fuse_conv_bn
from medlens.models.registry import create_model, list_models


@pytest.mark.parametrize("name", [i.name for i in list_models()])
def test_fused_networks_give_the_same_outputs(name, one_thread):
    info = next(i for i in list_models() if i.name == name)
    torch.manual_seed(0)
    options = {"pretrained": False} if info.pretrained else {}
    size = 64
    dims = {"spatial_dims": 2}
    model = create_model(
        name, num_classes=3, in_channels=info.channels or 1, image_size=size, **dims, **options
    ).eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, info.channels or 1, size, size)
    with torch.no_grad():
        before = model(x)
        folded = fuse_conv_bn(model)
        after = model(x)
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4), (name, folded)
    if name == "cnn-small":
        assert folded >= 10


def test_fusion_refuses_a_model_in_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fuse_conv_bn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).train())
