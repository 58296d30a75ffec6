"""medlens: medical image analysis on any dataset.

The public API mirrors the CLI: ``ingest``, ``audit``, ``plan``, ``train``, ``evaluate``, ``predict``,
``compare``, ``summary``, ``convert``, ``demo``, ``load_run``, and ``list_models``/``create_model``. Each is
always a function: no subpackage shares its name (``medlens.training``, ``medlens.evaluation``,
``medlens.auditing``, ``medlens.inference``), so importing a submodule never replaces one. Heavy modules
(torch, MONAI, Lightning) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute in that module)
_LAZY = {
    "MedlensError": ("medlens.errors", "MedlensError"),
    "Manifest": ("medlens.data.manifest", "Manifest"),
    "ingest": ("medlens.data.ingest", "ingest"),
    "convert": ("medlens.data.convert", "convert"),
    "PreprocessingSpec": ("medlens.data.spec", "PreprocessingSpec"),
    "create_model": ("medlens.models.registry", "create_model"),
    "list_models": ("medlens.models.registry", "list_models"),
    "summary": ("medlens.models.summary", "summarize"),
    "TrainConfig": ("medlens.training.config", "TrainConfig"),
    "train": ("medlens.pipeline.steps", "train"),
    "plan": ("medlens.training.plans", "plan"),
    "learning_curve": ("medlens.pipeline.curve", "learning_curve"),
    "load_run": ("medlens.models.checkpoint", "load_model"),
    "evaluate": ("medlens.evaluation.evaluate", "evaluate"),
    "calibrate": ("medlens.evaluation.calibrate", "calibrate"),
    "compare": ("medlens.evaluation.compare", "compare"),
    "explain": ("medlens.explaining.run", "explain"),
    "triage": ("medlens.triaging.run", "triage"),
    "predict": ("medlens.pipeline.predict", "predict"),
    "audit": ("medlens.auditing.run", "audit"),
    "demo": ("medlens.pipeline.demo", "run_demo"),
    "search": ("medlens.searching.run", "search"),
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'medlens' has no attribute {name!r}")
