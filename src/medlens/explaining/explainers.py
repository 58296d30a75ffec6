"""Explainers of the built-in tasks, keyed by the name a task gives as its ``explainer``.

The same two-registry pattern as the evaluators (:mod:`medlens.evaluation.evaluators`): explaining needs
Grad-CAM, the embedding index and the picture renderer, which sit above :mod:`medlens.tasks`, so a built-in
task names its explainer (``Task.explainer = "classification"``) and this layer registers the function; a
task that explains itself (``explainer = None``) implements ``Task.explain`` instead. Either way the call is
``explain(loaded, studies, ctx) -> list[record]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlens.errors import MedlensError, did_you_mean
from medlens.io.guard import first_line

Explainer = Callable[..., list[dict[str, Any]]]
_EXPLAINERS: dict[str, Explainer] = {}


@dataclass
class ExplainContext:
    """What an explainer needs besides the model and the studies."""

    out: Path
    method: str = "gradcam"
    target: str | None = None
    k: int = 5
    index: Any = None  # an EmbeddingIndex, or None (no similar cases / OOD)
    write_png: bool = True
    seed: int = 0
    progress: bool = True
    _names: set[str] = field(default_factory=set)

    def png_name(self, given: str, suffix: str = "_explain.png") -> str:
        """``<stem>_explain.png``, unique within the output folder (``<stem>-2_explain.png`` ...); only the
        stem's safe characters are used, never the user's path."""
        stem = Path(str(given).split("::")[-1]).name
        for ext in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".dcm", ".tif", ".tiff", ".bmp", ".npz"):
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
                break
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip(".-")[:80] or "study"
        name, n = f"{stem}{suffix}", 2
        while name in self._names:
            name, n = f"{stem}-{n}{suffix}", n + 1
        self._names.add(name)
        return name


def study_error(err: MedlensError) -> str:
    """The one-line reason a study could not be explained (it stays in the output with this reason)."""
    reason = getattr(err, "reason", None)  # an unreadable image's own reason, without its path
    return str(reason).strip().splitlines()[0] if reason and str(reason).strip() else first_line(err)


def register_explainer(name: str) -> Callable[[Explainer], Explainer]:
    """Decorator registering ``explain(loaded, studies, ctx) -> records`` under ``name`` (once)."""

    def wrap(fn: Explainer) -> Explainer:
        if name in _EXPLAINERS:
            raise ValueError(f"explainer {name!r} is already registered")
        _EXPLAINERS[name] = fn
        return fn

    return wrap


def explainer_of(task) -> Explainer:
    """The task's named explainer, or its own ``explain`` hook when it names none."""
    name = getattr(task, "explainer", None)
    if name is None:
        return task.explain
    if name not in _EXPLAINERS:
        raise MedlensError(
            f"task {task.name!r} names explainer {name!r}, which is not registered"
            f"{did_you_mean(name, list(_EXPLAINERS))}"
        )
    return _EXPLAINERS[name]
