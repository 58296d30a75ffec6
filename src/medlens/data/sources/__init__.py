"""The registry of source adapters that :func:`medlens.data.ingest.ingest` chooses from.

An adapter is a class with a ``detect(path) -> bool`` and a ``load(path, **options) -> Manifest`` method,
registered under a name with :func:`register_source`. ``ingest`` asks the adapters in ``priority`` order
(lower first) and loads with the first whose ``detect`` is true, so specific layouts (image/mask pairs,
``dataset.json``) sit before the catch-alls (any CSV, any folder)::

    @register_source("my_layout", priority=30, description="folders of my scanner's exports")
    class MyLayout:
        def detect(self, path: Path) -> bool: ...
        def load(self, path: Path, **options) -> Manifest: ...
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from medlens.data.manifest import Manifest
from medlens.errors import MedlensError, did_you_mean


class SourceAdapter(Protocol):
    """What a registered source kind provides."""

    def detect(self, path: Path) -> bool:
        """True when ``path`` looks like this kind of source (cheap: never decode images)."""

    def load(self, path: Path, **options: Any) -> Manifest:
        """The manifest of ``path``; raises MedlensError for broken or ambiguous input."""


@dataclass(frozen=True)
class SourceInfo:
    """One registered source kind.

    Attributes:
        name: registry name (``ingest(..., kind=name)`` forces it).
        adapter: the adapter instance.
        priority: detection order, lower first.
        description: one line for help texts.
    """

    name: str
    adapter: SourceAdapter = field(repr=False, compare=False)
    priority: int = 100
    description: str = ""


_SOURCES: dict[str, SourceInfo] = {}


def register_source(name: str, *, priority: int = 100, description: str = "") -> Callable[[type], type]:
    """Class decorator: register an adapter class (instantiated without arguments) under ``name``.

    Raises:
        ValueError: ``name`` is already registered, or the class lacks ``detect``/``load``.
    """

    def decorate(cls: type) -> type:
        if name in _SOURCES:
            raise ValueError(f"source kind {name!r} is already registered")
        if not (callable(getattr(cls, "detect", None)) and callable(getattr(cls, "load", None))):
            raise ValueError(f"source adapter {cls.__name__} needs detect(path) and load(path, **options)")
        doc = (cls.__doc__ or "").strip().splitlines()
        _SOURCES[name] = SourceInfo(name, cls(), priority, description or (doc[0] if doc else ""))
        return cls

    return decorate


def list_sources(pattern: str | None = None) -> list[SourceInfo]:
    """Registered source kinds in detection order, optionally filtered by a glob ``pattern``."""
    infos = sorted(_SOURCES.values(), key=lambda s: (s.priority, s.name))
    return [s for s in infos if pattern is None or fnmatch.fnmatch(s.name, pattern)]


def get_source(name: str) -> SourceInfo:
    """The source kind called ``name``.

    Raises:
        MedlensError: unknown name, with "did you mean" and the valid names.
    """
    if name not in _SOURCES:
        names = [s.name for s in list_sources()]
        raise MedlensError(
            f"unknown source kind {name!r}.{did_you_mean(name, names)} Known kinds: {', '.join(names)}"
        )
    return _SOURCES[name]


def detect_source(path: Path) -> SourceInfo | None:
    """The first source kind (in priority order) whose ``detect`` accepts ``path``, or None."""
    for info in list_sources():
        if info.adapter.detect(path):
            return info
    return None


# Register the built-in kinds (these modules import register_source from here, so they come last).
from medlens.data.sources import boxes, folders, image_file, npz, segmentation, table  # noqa: E402,F401

__all__ = ["SourceAdapter", "SourceInfo", "detect_source", "get_source", "list_sources", "register_source"]
