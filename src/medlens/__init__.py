"""medlens: medical image analysis on any dataset.

The public API mirrors the CLI: ``ingest``, ``train``, ``evaluate``, ``predict``, ``compare``,
``list_models``/``create_model``. Heavy modules (torch, MONAI, Lightning) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "MedlensError": "medlens.errors",
    "Manifest": "medlens.data.manifest",
    "ingest": "medlens.data.ingest",
    "PreprocessingSpec": "medlens.data.spec",
    "create_model": "medlens.models.registry",
    "list_models": "medlens.models.registry",
    "TrainConfig": "medlens.train.config",
    "train": "medlens.train.fit",
    "learning_curve": "medlens.train.curve",
    "evaluate": "medlens.evaluate.evaluate",
    "compare": "medlens.evaluate.compare",
    "predict": "medlens.predict",
    "audit": "medlens.audit.run",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medlens' has no attribute {name!r}")
