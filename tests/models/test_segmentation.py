"""Segmentation models: every registered one in 2D and 3D, ResUNet's structure, and phantoms that train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss
from monai.networks.blocks import ResidualUnit

import medlens.models.segmentation as seg
from medlens.errors import MedlensError
from medlens.evaluation.seg_metrics import segmentation_case_metrics
from medlens.models.registry import create_model, get_model_info

SEG_MODELS = ["unet", "resunet", "basicunet", "segresnet"]


@pytest.mark.parametrize("name", SEG_MODELS)
@pytest.mark.parametrize("spatial_dims, size", [(2, 64), (3, 32)])
def test_every_seg_model_shape_finite_and_gradients(one_thread, name, spatial_dims, size):
    torch.manual_seed(0)
    assert get_model_info(name).task == "segmentation"
    model = create_model(name, num_classes=3, in_channels=2, spatial_dims=spatial_dims, image_size=size)
    batch = 2 if spatial_dims == 2 else 1  # keeps the 3D cases fast
    x = torch.randn(batch, 2, *([size] * spatial_dims))
    logits = model(x)
    assert logits.shape == (batch, 3, *([size] * spatial_dims))
    assert torch.isfinite(logits).all()
    logits.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


def test_resunet_is_residual_throughout_with_1x1_output():
    model = seg.resunet(2, 1, 2, 64)
    assert all(isinstance(block, ResidualUnit) for block in [*model.encoder, *model.decoder])
    assert len(model.encoder) == 5 and len(model.decoder) == 4  # the 5th encoder level is the bottleneck
    assert isinstance(model.head, torch.nn.Conv2d) and model.head.kernel_size == (1, 1)
    assert list(model.children())[-1] is model.head


def test_options_are_checked():
    with pytest.raises(
        MedlensError, match="unknown option 'head' for model 'unet': allowed options are dropout"
    ):
        seg.unet(2, 1, 2, 64, head="mlp")
    with pytest.raises(MedlensError, match="model 'segresnet' has no offline pretrained weights"):
        seg.segresnet(2, 1, 2, 64, pretrained=True)
    with pytest.raises(
        MedlensError, match="init_filters of model 'segresnet' must be a multiple of 8, got 12"
    ):
        seg.segresnet(2, 1, 2, 64, init_filters=12)
    with pytest.raises(MedlensError, match=r"dropout of model 'resunet' must be in \[0, 1\)"):
        seg.resunet(2, 1, 2, 64, dropout=1.5)
    assert seg.size_multiple("unet") == 16 and seg.size_multiple("resunet", channels=(8, 16, 32)) == 4
    assert seg.size_multiple("segresnet") == 8


def test_weights_option_loads_a_state_dict(tmp_path):
    torch.manual_seed(0)
    source = seg.resunet(2, 1, 2, 32, channels=(4, 8))
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = seg.resunet(2, 1, 2, 32, channels=(4, 8), weights=str(tmp_path / "w.pt")).eval()
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(loaded(x), source.eval()(x))
    with pytest.raises(MedlensError, match="cannot load weights .*w.pt into model 'resunet'"):
        seg.resunet(2, 1, 2, 32, channels=(4, 16), weights=str(tmp_path / "w.pt"))


# -- phantoms ------------------------------------------------------------------------------------------
def phantoms(
    n: int, size: int, dims: int, gen: torch.Generator, rmin: float = 0.12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ellipses (2D) or ellipsoids (3D) of varying brightness in Gaussian noise."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * dims, indexing="ij"))
    expand = (...,) + (None,) * dims
    centres = size * (0.3 + 0.4 * torch.rand(n, dims, generator=gen))
    radii = size * (rmin + 0.12 * torch.rand(n, dims, generator=gen))
    inside = (((grid[None] - centres[expand]) / radii[expand]) ** 2).sum(1) <= 1
    y = inside.long()[:, None]
    brightness = 0.5 + 0.5 * torch.rand(n, 1, *([1] * dims), generator=gen)
    return y * brightness + 0.3 * torch.randn(y.shape, generator=gen), y


@pytest.mark.parametrize("dims, size, rmin, steps, batch", [(2, 32, 0.12, 150, 8), (3, 16, 0.2, 100, 4)])
def test_small_unet_learns_phantoms(one_thread, dims, size, rmin, steps, batch):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = create_model(
        "unet",
        num_classes=2,
        in_channels=1,
        spatial_dims=dims,
        image_size=size,
        channels=(8, 16, 32),
        num_res_units=1,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = DiceCELoss(softmax=True, to_onehot_y=True)
    for _ in range(steps):
        x, y = phantoms(batch, size, dims, gen, rmin)
        loss = loss_fn(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    x, y = phantoms(12, size, dims, gen, rmin)  # unseen phantoms
    with torch.no_grad():
        pred = model(x).argmax(1)
    dice = np.mean([segmentation_case_metrics(pred[i], y[i, 0])["dice"] for i in range(len(x))])
    assert dice > 0.9
