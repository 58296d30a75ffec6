"""Imports every model module so that their ``@register_model`` decorators run."""

from medlens.models import backbones, cnn, detection, efficientnet_lite, logreg, segmentation  # noqa: F401
