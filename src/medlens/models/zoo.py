"""Imports every model module so that their ``@register_model`` decorators run."""

from medlens.models import cnn, logreg  # noqa: F401
