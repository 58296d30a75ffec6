"""Attribution maps: every registered model has a Grad-CAM layer that works, maps are deterministic and
point where a model with a known answer looks, and the model is left exactly as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medlens.errors import MedlensError
from medlens.explaining.cam import (
    METHODS,
    attribution_maps,
    box_attribution,
    cam_layer,
    overlay,
    peak,
)
from medlens.models.registry import create_model, list_models

SIZE = 64
EXPLAINED = [i.name for i in list_models(task="classification") + list_models(task="detection")]


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """Tiny tensors on a busy machine: one thread (the shared ``one_thread`` fixture)."""


def _build(name: str, size: int = SIZE) -> tuple[nn.Module, int]:
    info = next(i for i in list_models() if i.name == name)
    channels = info.channels or 1
    torch.manual_seed(0)
    options = {"pretrained": False} if info.pretrained else {}
    num = 4 if info.task == "detection" else 2
    model = create_model(name, num_classes=num, in_channels=channels, image_size=size, **options)
    return model, channels


def _batch(channels: int, n: int = 2, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_maps(maps: np.ndarray, n: int, size: int = SIZE) -> None:
    assert maps.shape == (n, size, size)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0


class HalfNet(nn.Module):
    """Known answer: a 1x1 conv splits the image into its bright part (channel 0) and its dark part
    (channel 1); the class-1 logit is the mean of channel 0 over the right half, the class-0 logit the mean of
    channel 1 over the left half."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        self.features = nn.Sequential(conv, nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        w = f.shape[-1]
        left = f[:, 1, :, : w // 2].mean(dim=(1, 2))
        right = f[:, 0, :, w // 2 :].mean(dim=(1, 2))
        return torch.stack([left, right], dim=1)


def _half_image(n: int = 2, size: int = 32) -> torch.Tensor:
    """A bright square in the right half (at different rows per sample), a weaker dark one in the left."""
    x = torch.zeros(n, 1, size, size)
    for i in range(n):
        top = 4 + 8 * i
        x[i, 0, top : top + 6, 22:28] = 2.0
        x[i, 0, 20:26, 4:10] = -1.0
    return x


@pytest.mark.parametrize("name", EXPLAINED)
def test_every_model_has_a_working_cam_layer(name):
    info = next(i for i in list_models() if i.name == name)
    assert info.cam_layer, f"model {name!r} registers no cam_layer"
    model, channels = _build(name)
    layer = cam_layer(name, model)
    assert layer in dict(model.named_modules())
    x = _batch(channels)
    if info.task == "detection":
        maps = {0: box_attribution(model, x, layer=layer)}
    else:
        maps = {t: attribution_maps(model, x, layer=layer, target=t) for t in (0, 1)}
    for m in maps.values():
        _assert_maps(m, 2)
    # Not constant: a random-init network may see no positive evidence for one class in a sample (an all-zero
    # Grad-CAM is then correct), but every sample must have some structure for one of the classes.
    spread = np.max([m.max(axis=(1, 2)) - m.min(axis=(1, 2)) for m in maps.values()], axis=0)
    assert (spread > 0.5).all(), spread


def test_segmentation_cam_layers_exist():
    for info in list_models(task="segmentation"):
        if info.cam_layer is None:
            continue
        model = create_model(info.name, num_classes=2)
        assert cam_layer(info.name, model) == info.cam_layer


def test_maps_are_deterministic_and_batch_independent():
    model, channels = _build("cnn-small")
    layer = cam_layer("cnn-small", model)
    x = _batch(channels, n=3)
    first = attribution_maps(model, x, layer=layer)
    np.testing.assert_array_equal(first, attribution_maps(model, x, layer=layer))
    # a sample's map does not depend on the rest of the batch (per-sample targets, eval-mode BatchNorm)
    alone = attribution_maps(model, x[1:2], layer=layer)
    np.testing.assert_allclose(alone[0], first[1], atol=1e-5)
    small = x[:, :, :32, :32].contiguous()
    np.testing.assert_array_equal(
        attribution_maps(model, small, layer=layer, method="occlusion", occlusion_mask=8),
        attribution_maps(model, small, layer=layer, method="occlusion", occlusion_mask=8),
    )


def test_known_answer_peak_and_target():
    model = HalfNet()
    x = _half_image()
    with torch.no_grad():
        assert (model(x).argmax(1) == 1).all()  # the right half's bright square wins
    for method in ("gradcam", "gradcampp"):
        predicted = attribution_maps(model, x, layer="features", method=method)
        for i, heat in enumerate(predicted):
            px, py = peak(heat)
            assert px >= 16, (method, i, px, py)
            assert 4 + 8 * i <= py < 10 + 8 * i, (method, i, px, py)
        other = attribution_maps(model, x, layer="features", method=method, target=0)
        assert not np.allclose(other, predicted)
        assert all(peak(h)[0] < 16 for h in other)
        np.testing.assert_array_equal(
            attribution_maps(model, x, layer="features", method=method, target=[1, 1]), predicted
        )
        mixed = attribution_maps(model, x, layer="features", method=method, target=[0, 1])
        np.testing.assert_array_equal(mixed[0], other[0])
        np.testing.assert_array_equal(mixed[1], predicted[1])
    occluded = attribution_maps(model, x, layer=None, method="occlusion", occlusion_mask=6)
    assert all(peak(h)[0] >= 16 for h in occluded)


def _state(model: nn.Module) -> dict:
    return {
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: p.grad for n, p in model.named_parameters()},
        "inplace": {n: m.inplace for n, m in model.named_modules() if hasattr(m, "inplace")},
        "hooks": {
            n: (len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks))
            for n, m in model.named_modules()
        },
        "full_backward": {n: m._is_full_backward_hook for n, m in model.named_modules()},
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
    }


@pytest.mark.parametrize("method", METHODS)
def test_model_is_left_unchanged_and_frozen_backbone_still_explains(method):
    torch.manual_seed(0)
    model = create_model("cnn-small", num_classes=2, freeze_backbone=True)
    model.train()  # the backbone stays in eval (frozen), the head trains
    before = _state(model)
    assert before["training"]["head"] and not before["training"]["backbone"]
    assert not before["requires_grad"]["backbone.stem.0.0.weight"]
    assert before["requires_grad"]["head.1.weight"]
    x = _batch(1, n=2, size=32)
    maps = attribution_maps(model, x, layer=cam_layer("cnn-small", model), method=method, occlusion_mask=8)
    _assert_maps(maps, 2, 32)
    assert (maps.max(axis=(1, 2)) > maps.min(axis=(1, 2))).any()
    after = _state(model)
    for key in ("training", "requires_grad", "grad", "inplace", "hooks", "full_backward"):
        assert after[key] == before[key], key
    for k, v in before["weights"].items():
        torch.testing.assert_close(after["weights"][k], v, rtol=0, atol=0)  # BatchNorm statistics included
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_box_attribution_leaves_no_hooks_and_is_deterministic():
    model, channels = _build("boxnet")
    layer = cam_layer("boxnet", model)
    x = _batch(channels)
    maps = box_attribution(model, x, layer=layer)
    _assert_maps(maps, 2)
    np.testing.assert_array_equal(maps, box_attribution(model, x, layer=layer))
    assert model.training
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_methods_return_the_same_shapes():
    model, channels = _build("cnn-small")
    layer = cam_layer("cnn-small", model)
    x = _batch(channels, n=2, size=32)
    shapes = {m: attribution_maps(model, x, layer=layer, method=m).shape for m in METHODS}
    assert set(shapes.values()) == {(2, 32, 32)}, shapes


def test_errors_say_what_to_do():
    model, channels = _build("cnn-small")
    x = _batch(channels, n=2, size=32)
    with pytest.raises(MedlensError, match="one of gradcam"):
        attribution_maps(model, x, layer="backbone.stages.3", method="lime")
    with pytest.raises(MedlensError, match="does not exist"):
        attribution_maps(model, x, layer="backbone.nope")
    with pytest.raises(MedlensError, match="'resnet18'"):
        cam_layer("resnet18", model)  # resnet18's layer is not in a cnn-small
    with pytest.raises(MedlensError, match="needs a layer"):
        attribution_maps(model, x, layer=None)
    with pytest.raises(MedlensError, match="out of range"):
        attribution_maps(model, x, layer="backbone.stages.3", target=5)
    with pytest.raises(MedlensError, match="one per sample"):
        attribution_maps(model, x, layer="backbone.stages.3", target=[0, 1, 1])
    with pytest.raises(MedlensError, match=r"\(N, C, H, W\)"):
        attribution_maps(model, x[0], layer="backbone.stages.3")
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_peak_takes_the_first_maximum_in_raster_order():
    heat = np.zeros((5, 7), dtype=np.float32)
    heat[3, 1] = heat[1, 5] = heat[3, 6] = 1.0
    assert peak(heat) == (5, 1)
    heat[4, 0] = 2.0
    assert peak(heat) == (0, 4)


def test_overlay_blends_with_jet_and_resizes_the_heat():
    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[:, 15:] = 1.0
    out = overlay(image, heat, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    # jet: 0 is dark blue, 1 dark red
    assert out[0, 0, 2] > out[0, 0, 0] and out[0, 29, 0] > out[0, 29, 2]
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), image)
    small = overlay(image, np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32))
    assert small.shape == (20, 30, 3)
    assert small[10, 0, 2] > small[10, 0, 0] and small[10, 29, 0] > small[10, 29, 2]
    with pytest.raises(MedlensError, match="RGB uint8"):
        overlay(image[..., 0], heat)


def test_repeated_maps_leave_no_autograd_graph_alive():
    """A server explains one image after another: nothing of a map may outlive it (MONAI keeps the score and
    activations on its hook object, in a cycle through autograd nodes the collector cannot free)."""
    import gc

    from torch.utils.hooks import BackwardHook

    model, channels = _build("cnn-small")
    x = torch.randn(2, channels, SIZE, SIZE)
    for method in ("gradcam", "gradcampp"):
        for _ in range(3):
            attribution_maps(model, x, layer=cam_layer("cnn-small", model), method=method, target=[0, 1])
    box, _ = _build("boxnet")
    box_attribution(box, torch.randn(1, 1, SIZE, SIZE), layer=cam_layer("boxnet", box))
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, BackwardHook)]
    assert not [o for o in gc.get_objects() if torch.is_tensor(o) and o.grad_fn is not None]
