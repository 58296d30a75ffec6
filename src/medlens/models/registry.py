"""One registry of model factories: ``register_model``, ``create_model``, ``list_models``.

A factory is ``factory(spatial_dims, in_channels, num_classes, **options) -> nn.Module`` whose forward
returns logits of shape (N, num_classes). Registering a name twice is an error; unknown names answer with
"did you mean" and the valid list.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medlens.errors import MedlensError, did_you_mean

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model besides its factory.

    Attributes:
        name: registry name.
        description: one line for ``medlens models``.
        task: "classification" (later also "segmentation", "detection").
        channels: input channels the model needs (None = any; 3 for ImageNet-pretrained backbones).
        mean, std: input normalisation the model expects (None = medlens default for the data).
        default_size: suggested input size in pixels.
        pretrained: True when real pretrained weights ship offline for it.
        cam_layer: dotted name (as in ``model.named_modules()``) of the layer whose activations Grad-CAM
            uses: the last convolutional block of a classifier's or detector's backbone, the deepest
            encoder (bottleneck) level of a segmentation network; for the model built with its default
            options. None = no Grad-CAM layer known.
    """

    name: str
    description: str
    factory: Callable[..., Any] = field(repr=False, compare=False)
    task: str = "classification"
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    default_size: int = 128
    pretrained: bool = False
    cam_layer: str | None = None


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, description: str, **info: Any) -> Callable:
    """Decorator registering ``factory`` under ``name`` (an error if the name is taken)."""

    def wrap(factory: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name=name, description=description, factory=factory, **info)
        return factory

    return wrap


def _ensure_loaded() -> None:
    # Importing the modules runs their @register_model decorators. Deferred: import cycle (every zoo module
    # imports register_model from here), and the zoo loads torch and MONAI, which listing the registry
    # before first use must not.
    from medlens.models import zoo  # noqa: F401


def get_model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``; unknown names raise with a did-you-mean hint."""
    _ensure_loaded()
    if name not in _REGISTRY:
        names = sorted(_REGISTRY)
        raise MedlensError(
            f"unknown model {name!r}.{did_you_mean(name, names)} "
            f"Available: {', '.join(names)} (see `medlens models`)"
        )
    return _REGISTRY[name]


def list_models(pattern: str | None = None, task: str | None = None) -> list[ModelInfo]:
    """Registered models, optionally filtered by a glob ``pattern`` and ``task``."""
    _ensure_loaded()
    infos = sorted(_REGISTRY.values(), key=lambda i: i.name)
    if pattern:
        infos = [i for i in infos if fnmatch.fnmatch(i.name, pattern)]
    if task:
        infos = [i for i in infos if task in (i.task,)]
    return infos


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 1,
    spatial_dims: int = 2,
    image_size: int | None = None,
    **options: Any,
):
    """Build model ``name``.

    Args:
        name: registry name (``medlens models`` lists them).
        num_classes: number of output logits.
        in_channels: input channels.
        spatial_dims: 2 or 3.
        image_size: input side in pixels (needed by models with a fixed input such as ``logreg``).
        **options: model options: ``freeze_backbone``, ``head`` ("linear" | "mlp"), ``dropout``,
            ``weights`` (path to a state dict), ``pretrained``.
    """
    info = get_model_info(name)
    if num_classes < 2:
        raise MedlensError(
            f"a model needs at least 2 output classes (background counts for segmentation), got {num_classes}"
        )
    if spatial_dims not in (2, 3):
        raise MedlensError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return info.factory(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size or info.default_size,
        **options,
    )
