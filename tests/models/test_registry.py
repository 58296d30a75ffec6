"""Every registered model: shapes, gradients, freezing; registry messages; model summaries."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medlens.errors import MedlensError
from medlens.models import create_model, get_model_info, list_models
from medlens.models.classifier import Classifier
from medlens.models.heads import make_head
from medlens.models.summary import model_summary, summarize

CLASSIFIERS = [info.name for info in list_models(task="classification")]
NUM_CLASSES = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _build(name: str, spatial_dims: int = 2, size: int = 32, **options) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    channels = get_model_info(name).channels or 1
    model = create_model(
        name,
        num_classes=NUM_CLASSES,
        in_channels=channels,
        spatial_dims=spatial_dims,
        image_size=size,
        **options,
    )
    return model, torch.randn(2, channels, *[size] * spatial_dims)


def _bn_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}


def _check_forward_backward(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"no gradient reaches {name}"
            assert torch.isfinite(param.grad).all(), f"non-finite gradient in {name}"


def test_registry_lists_the_zoo():
    assert {
        "logreg",
        "cnn-small",
        "resnet18",
        "resnet50",
        "densenet121",
        "efficientnet-b0",
        "vgg19",
        "efficientnet-lite0",
    } <= set(CLASSIFIERS)
    lite = get_model_info("efficientnet-lite0")
    assert (lite.channels, lite.default_size, lite.pretrained) == (3, 224, True)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_and_every_parameter_gets_a_gradient(name):
    model, x = _build(name)
    assert isinstance(model, Classifier) and model.num_features > 0
    _check_forward_backward(model, x)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_frozen_backbone_trains_only_the_head_and_keeps_bn_statistics(name):
    model, x = _build(name, freeze_backbone=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("head.") for n in trainable)
    before = _bn_stats(model.backbone)
    model.train()
    assert model.training and not model.backbone.training
    with torch.no_grad():  # BatchNorm would still update its statistics in train mode; only faster
        model(x)
    after = _bn_stats(model.backbone)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unfrozen_backbone_updates_bn_statistics():
    # The counterpart of the frozen test: without freezing, a train-mode forward moves the statistics.
    model, x = _build("cnn-small")
    before = _bn_stats(model.backbone)
    model.train()(x)
    after = _bn_stats(model.backbone)
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ["cnn-small", "resnet18"])
def test_3d_models(name):
    model, x = _build(name, spatial_dims=3, size=16)
    assert x.shape == (2, 1, 16, 16, 16)
    _check_forward_backward(model, x)


def test_cnn_small_2d_uses_channels_last_and_3d_does_not():
    model_2d, _ = _build("cnn-small")
    model_3d, _ = _build("cnn-small", spatial_dims=3, size=16)
    assert model_2d.backbone.stem[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model_3d.backbone.stem[0][0].weight.is_contiguous()


def test_mlp_head_and_dropout_option():
    model, x = _build("cnn-small", head="mlp", dropout=0.3)
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    assert [lin.out_features for lin in linears] == [256, NUM_CLASSES]
    assert [m.p for m in model.head if isinstance(m, nn.Dropout)] == [0.3]
    assert model(x).shape == (2, NUM_CLASSES)


def test_make_head_linear_layout():
    head = make_head("linear", 8, 4, dropout=0.1)
    assert isinstance(head[0], nn.Dropout) and head[1].in_features == 8 and head[1].out_features == 4


def test_unknown_model_suggests_the_close_name():
    with pytest.raises(MedlensError, match="Did you mean 'resnet18'"):
        create_model("resnet-18", num_classes=2)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cnn-small", {"drop_out": 0.2}, "unknown option 'drop_out' for model 'cnn-small'"),
        ("resnet18", {"head": "transformer"}, "unknown head 'transformer'"),
        ("cnn-small", {"dropout": 1.5}, r"dropout must be a number in \[0, 1\), got 1.5"),
        (
            "cnn-small",
            {"freeze_backbone": "yes"},
            "'freeze_backbone' of model 'cnn-small' must be true or false",
        ),
        (
            "resnet18",
            {"pretrained": True},
            "model 'resnet18' has no offline pretrained weights: pass weights=PATH",
        ),
        ("logreg", {"head": "mlp"}, "model 'logreg' takes no head option"),
    ],
)
def test_bad_options_are_named(name, options, message):
    with pytest.raises(MedlensError, match=message):
        create_model(name, num_classes=2, **options)


def test_efficientnet_lite0_refuses_3d_pretrained():
    with pytest.raises(MedlensError, match="ImageNet weights are 2D: use pretrained=false"):
        create_model("efficientnet-lite0", num_classes=2, in_channels=3, spatial_dims=3)


def test_logreg_names_the_expected_input_size():
    model = create_model("logreg", num_classes=2, image_size=8)
    with pytest.raises(MedlensError, match=r"built for inputs of 1 channel\(s\) x 8 x 8 \(64 values\)"):
        model(torch.zeros(1, 1, 16, 16))


def test_logreg_binary_returns_zero_and_one_logit():
    model = create_model("logreg", num_classes=2, image_size=4)
    x = torch.randn(5, 1, 4, 4)
    logits = model(x)
    z = model.head.linear(x.flatten(1))[:, 0]
    assert torch.equal(logits[:, 0], torch.zeros(5))
    assert torch.allclose(logits.softmax(1)[:, 1], torch.sigmoid(z))


def test_summary_of_logreg_matches_hand_counts():
    d, k = 1 * 8 * 8, 5
    result = summarize("logreg", 8, in_channels=1, num_classes=k)
    assert (result["total_params"], result["trainable_params"], result["macs"]) == (
        d * k + k,
        d * k + k,
        d * k,
    )
    binary = summarize("logreg", (6, 6, 6), in_channels=2, num_classes=2)
    assert (binary["total_params"], binary["macs"]) == (2 * 216 + 1, 2 * 216)
    assert [m["name"] for m in result["modules"]] == ["backbone", "head"]
    assert result["modules"][1]["macs"] == d * k and result["modules"][0]["params"] == 0


def test_summary_of_one_conv_matches_hand_counts():
    # 3x3 conv, 2 -> 4 channels, 10x10 output: 4*2*9 weights + 4 biases; 100 * 4 * 2 * 9 multiply-adds.
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(400, 3))
    model[2].requires_grad_(False)
    result = model_summary(model, (1, 2, 10, 10))
    assert result["total_params"] == 76 + 1203 and result["trainable_params"] == 76
    assert result["macs"] == 7200 + 1200
    assert [(m["name"], m["macs"], m["params"]) for m in result["modules"]] == [
        ("0", 7200, 76),
        ("1", 0, 0),
        ("2", 1200, 1203),
    ]
