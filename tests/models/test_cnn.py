"""cnn-small's own option: a stride-1 stem keeps small images' resolution."""

from __future__ import annotations

import pytest
import torch

import medlens
from medlens.errors import MedlensError


def test_stem_stride_one_keeps_twice_the_resolution():
    fast = medlens.create_model("cnn-small", num_classes=2, in_channels=1, spatial_dims=2, image_size=28)
    fine = medlens.create_model(
        "cnn-small", num_classes=2, in_channels=1, spatial_dims=2, image_size=28, stem_stride=1
    )
    x = torch.randn(2, 1, 28, 28)
    assert fast.backbone.stem(x).shape[-1] == 14 and fine.backbone.stem(x).shape[-1] == 28
    assert fine(x).shape == (2, 2)
    with pytest.raises(MedlensError, match="stem_stride' of model 'cnn-small' must be 1 or 2"):
        medlens.create_model(
            "cnn-small", num_classes=2, in_channels=1, spatial_dims=2, image_size=28, stem_stride=3
        )
