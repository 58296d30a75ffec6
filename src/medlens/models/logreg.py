"""Logistic regression on raw pixels, written as a one-layer network.

The resized image is flattened to ``d = in_channels * image_size ** spatial_dims`` values and one linear
layer computes a weighted sum of them. It trains with the same gradient-descent loop, loss
(cross-entropy) and optimiser as every other model, so it is an honest baseline: add L2 regularisation
through the optimiser's weight decay.

Binary case: the layer has a single output ``z`` and the forward returns the two logits ``[0, z]``.
Softmax over ``[0, z]`` is ``(1 - sigmoid(z), sigmoid(z))``, so cross-entropy on these logits is exactly the
logistic-regression loss and ``P(class 1) = sigmoid(z)``; the weights are identifiable (no redundant second
weight vector). Multiclass: ``K`` outputs and softmax (multinomial logistic regression).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medlens.errors import MedlensError
from medlens.models.classifier import Classifier, resolve_options
from medlens.models.registry import register_model
from medlens.models.weights import load_weights


class LogisticLayer(nn.Module):
    """The weighted sum(s) of logistic regression.

    Args:
        in_features: number of input values d.
        num_classes: K >= 2; K == 2 uses one weight vector and returns logits ``[0, z]``.
        dropout: optional dropout on the inputs (0 = plain logistic regression).
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, 1 if num_classes == 2 else num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) from flattened inputs (N, d)."""
        z = self.linear(self.dropout(x))
        if self.num_classes == 2:
            return torch.cat([torch.zeros_like(z), z], dim=1)
        return z


class Flatten(nn.Module):
    """Flatten to (N, d); a clear message when the input size is not the one the model was built for."""

    def __init__(self, expected: int, shape_hint: str):
        super().__init__()
        self.expected = expected
        self.shape_hint = shape_hint
        # Parameter-free, so state dicts are unchanged: the 4D layer Grad-CAM hooks (``cam_layer``).
        self.pixels = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *spatial) -> (N, d)."""
        flat = self.pixels(x).flatten(1)
        if flat.shape[1] != self.expected:
            raise MedlensError(
                f"logreg was built for inputs of {self.shape_hint} ({self.expected} values) but got "
                f"shape {tuple(x.shape[1:])}: resize images to the model's image_size"
            )
        return flat


@register_model(
    "logreg",
    "logistic regression on the resized pixels (one weighted sum; a baseline)",
    default_size=64,
    cam_layer="backbone.pixels",  # the only 4D layer: a parameter-free identity on the input pixels
)
def logreg(
    spatial_dims: int, in_channels: int, num_classes: int, image_size: int, **options: Any
) -> Classifier:
    """Logistic regression: flatten -> one linear layer.

    ``head`` must stay "linear" (an MLP head would no longer be logistic regression); ``freeze_backbone`` has
    nothing to freeze (the flatten step has no parameters).
    """
    opts = resolve_options("logreg", options)
    if opts["head"] != "linear":
        raise MedlensError(
            "model 'logreg' takes no head option: it is one linear layer; use cnn-small for an MLP"
        )
    if opts["pretrained"]:
        raise MedlensError("model 'logreg' has no pretrained weights: drop pretrained=true")
    size = [image_size] * spatial_dims
    d = in_channels * image_size**spatial_dims
    hint = f"{in_channels} channel(s) x {' x '.join(map(str, size))}"
    model = Classifier(Flatten(d, hint), LogisticLayer(d, num_classes, opts["dropout"]), num_features=d)
    if opts["weights"] is not None:
        load_weights(model, opts["weights"])
    if opts["freeze_backbone"]:
        model.set_backbone_frozen(True)  # nothing to freeze, but the model reports the option consistently
    return model
