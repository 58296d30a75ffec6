"""The one classification network shape every model shares: backbone -> features -> head -> logits.

Factories in the zoo build a backbone (input -> (N, F) features), then call :func:`build_classifier`, which
checks the common options, adds the head, loads a ``weights`` file and freezes the backbone when asked.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medlens.errors import MedlensError
from medlens.models.heads import HEAD_KINDS, check_dropout, make_head
from medlens.models.weights import load_weights

#: Options every factory accepts, with their defaults.
STANDARD_OPTIONS: dict[str, Any] = {
    "freeze_backbone": False,
    "head": "linear",
    "dropout": 0.0,
    "weights": None,
    "pretrained": False,
}


class Classifier(nn.Module):
    """Backbone + head.

    Args:
        backbone: module mapping the input to features of shape (N, F).
        head: module mapping features to logits (N, num_classes).
        num_features: F, the backbone's feature width.
        freeze_backbone: when True the backbone's parameters get ``requires_grad=False`` and the backbone
            stays in eval mode even while the model trains, so BatchNorm running statistics keep their
            (pretrained) values: a frozen backbone is a fixed feature extractor.
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, num_features: int, freeze_backbone: bool = False
    ):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_features = int(num_features)
        self.freeze_backbone = False
        if freeze_backbone:
            self.set_backbone_frozen(True)

    def set_backbone_frozen(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the backbone: ``requires_grad`` off and BatchNorm statistics fixed."""
        self.freeze_backbone = bool(frozen)
        for param in self.backbone.parameters():
            param.requires_grad_(not self.freeze_backbone)
        self.backbone.train(self.training and not self.freeze_backbone)

    def train(self, mode: bool = True) -> Classifier:
        """Set train/eval mode; a frozen backbone always stays in eval mode."""
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (N, F), e.g. for embeddings or cohort analysis."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes)."""
        return self.head(self.backbone(x))


def resolve_options(model: str, options: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Merge ``options`` over the standard defaults and check them.

    Args:
        model: registry name, for messages.
        options: the ``**options`` a factory received.
        **overrides: per-model defaults (e.g. ``pretrained=True``).

    Raises:
        MedlensError: naming an unknown option or a bad value.
    """
    unknown = sorted(set(options) - set(STANDARD_OPTIONS))
    if unknown:
        raise MedlensError(
            f"unknown option {unknown[0]!r} for model {model!r}: "
            f"allowed options are {', '.join(STANDARD_OPTIONS)}"
        )
    opts = {**STANDARD_OPTIONS, **overrides, **options}
    if opts["head"] not in HEAD_KINDS:
        raise MedlensError(
            f"unknown head {opts['head']!r} for model {model!r}: use one of {', '.join(HEAD_KINDS)}"
        )
    check_dropout(opts["dropout"])
    for flag in ("freeze_backbone", "pretrained"):
        if not isinstance(opts[flag], bool):
            raise MedlensError(
                f"option {flag!r} of model {model!r} must be true or false, got {opts[flag]!r}"
            )
    return opts


def no_shipped_weights(model: str, opts: dict[str, Any]) -> None:
    """Refuse ``pretrained=True`` for a model whose weights do not ship offline."""
    if opts["pretrained"]:
        raise MedlensError(
            f"model {model!r} has no offline pretrained weights: pass weights=PATH to a state dict "
            "you have (torchvision/MONAI names are mapped), or use efficientnet-lite0"
        )


def build_classifier(
    backbone: nn.Module,
    num_features: int,
    num_classes: int,
    opts: dict[str, Any],
    pretrained_path: str | None = None,
) -> Classifier:
    """Add the head chosen in ``opts``, load weights and apply ``freeze_backbone``.

    Args:
        backbone: feature extractor returning (N, num_features).
        num_features: backbone feature width.
        num_classes: number of logits.
        opts: options from :func:`resolve_options`.
        pretrained_path: shipped pretrained weights, loaded before the user's ``opts['weights']``.
    """
    head = make_head(opts["head"], num_features, num_classes, dropout=opts["dropout"])
    model = Classifier(backbone, head, num_features)
    paths = [p for p in (pretrained_path, opts["weights"]) if p is not None]
    if paths:
        for path in paths:
            load_weights(model, path)
    if opts["freeze_backbone"]:
        model.set_backbone_frozen(True)
    return model
