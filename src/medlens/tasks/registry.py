"""The task registry: ``register_task("name")`` on a :class:`~medlens.tasks.base.Task` subclass, ``get_task``,
``list_tasks``.

The built-in tasks are known by name without importing them (their modules import torch, and the CLI and
:class:`~medlens.training.config.TrainConfig` validate ``--task`` before any command runs): ``get_task``
imports a built-in's module the first time it is asked for, and the module's ``@register_task`` fills in the
class. Registering a taken name is an error, and so is registering a built-in name from another module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from medlens.errors import MedlensError, did_you_mean

if TYPE_CHECKING:  # the registry stays light: tasks.base imports torch
    from medlens.tasks.base import Task

#: Built-in task name → the module that registers it (imported on first use).
BUILTIN = {
    "classification": "medlens.tasks.classification",
    "segmentation": "medlens.tasks.segmentation",
    "detection": "medlens.tasks.detection",
}
_REGISTRY: dict[str, type[Task]] = {}
_INSTANCES: dict[str, Task] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Decorator registering a Task subclass under ``name`` (also set as its ``name``).

    Raises:
        ValueError: the name is taken, or is a built-in task's name registered from another module.
    """

    def wrap(cls: type[Task]) -> type[Task]:
        if name in _REGISTRY:
            raise ValueError(f"task {name!r} is already registered (by {_REGISTRY[name].__qualname__})")
        if name in BUILTIN and cls.__module__ != BUILTIN[name]:
            raise ValueError(f"task {name!r} is a built-in task of {BUILTIN[name]}; pick another name")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_tasks() -> list[str]:
    """Every task name: the built-ins first, then the registered ones in registration order."""
    return list(BUILTIN) + [n for n in _REGISTRY if n not in BUILTIN]


def get_task(name: str) -> Task:
    """The task registered as ``name`` (one shared, unconfigured instance).

    Raises:
        MedlensError: no such task (with the closest names and the valid list).
    """
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])  # deferred: the task modules import torch
    if name not in _REGISTRY:
        raise MedlensError(
            f"unknown task {name!r}; known tasks: {', '.join(list_tasks())}."
            f"{did_you_mean(str(name), list_tasks())}"
        )
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]
