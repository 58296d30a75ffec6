"""Evaluators of the built-in tasks, keyed by the name a task gives as its ``evaluator``.

Why a second registry: a task's evaluation scores with the bootstrap, calibration and plotting library of
:mod:`medlens.evaluation`, which sits a layer *above* :mod:`medlens.tasks` (import-linter keeps tasks from
importing it). So a built-in task names its evaluator (``Task.evaluator = "segmentation"``) and this layer
registers the function under that name; a task that scores itself (``evaluator = None``) implements
``Task.evaluate`` instead, so a new task still needs only its own file. Either way the call is
``evaluate(loaded, sub, ctx) -> Evaluation`` and :func:`medlens.evaluation.writer.write_evaluation` writes
the files.
"""

from __future__ import annotations

from collections.abc import Callable

from medlens.errors import MedlensError, did_you_mean
from medlens.tasks.base import EvalContext, Evaluation, Task

Evaluator = Callable[..., Evaluation]
_EVALUATORS: dict[str, Evaluator] = {}


def register_evaluator(name: str) -> Callable[[Evaluator], Evaluator]:
    """Decorator registering ``evaluate(loaded, sub, ctx) -> Evaluation`` under ``name`` (once)."""

    def wrap(fn: Evaluator) -> Evaluator:
        if name in _EVALUATORS:
            raise ValueError(f"evaluator {name!r} is already registered")
        _EVALUATORS[name] = fn
        return fn

    return wrap


def evaluator_of(task: Task) -> Callable[..., Evaluation]:
    """The task's named evaluator, or its own ``evaluate`` hook when it names none."""
    if task.evaluator is None:
        return task.evaluate
    if task.evaluator not in _EVALUATORS:
        raise MedlensError(
            f"task {task.name!r} names evaluator {task.evaluator!r}, which is not registered"
            f"{did_you_mean(task.evaluator, list(_EVALUATORS))}"
        )
    return _EVALUATORS[task.evaluator]


__all__ = ["EvalContext", "Evaluation", "evaluator_of", "register_evaluator"]
