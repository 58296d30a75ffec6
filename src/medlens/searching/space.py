"""What a search varies: ``--grid`` text, ``--set`` options, the default TPE space, and ``--budget``."""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from typing import Any

from medlens.errors import MedlensError, did_you_mean
from medlens.training.config import TrainConfig, check_model, parse_duration

#: --trials without --grid: (low, high, log) per TrainConfig field, sampled by TPE (momentum with sgd only).
DEFAULT_SPACE: dict[str, tuple[float, float, bool]] = {
    "lr": (1e-4, 1e-2, True),
    "weight_decay": (1e-5, 1e-1, True),
    "dropout": (0.0, 0.5, False),
    "momentum": (0.8, 0.99, False),
}


def tpe_space(optimizer: str) -> dict[str, tuple[float, float, bool]]:
    """:data:`DEFAULT_SPACE`, without momentum unless the optimizer is SGD (AdamW has no momentum option)."""
    return {k: v for k, v in DEFAULT_SPACE.items() if k != "momentum" or optimizer == "sgd"}


#: Parameters drawn on a log axis in the parallel-coordinates plot.
LOG_PARAMS = ("lr", "weight_decay")
_SCALARS = (bool, int, float, str)


def field_kind(name: str) -> type:
    """The scalar type of a TrainConfig field (``float | None`` → float); MedlensError for an unknown name or
    a field that is not a single number, word or flag."""
    names = [f.name for f in fields(TrainConfig)]
    if name not in names:
        raise MedlensError(f"unknown training option {name!r}.{did_you_mean(name, names)}")
    hint = typing.get_type_hints(TrainConfig)[name]
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    args = [a for a in (typing.get_args(hint) if union else (hint,)) if a is not type(None)]
    kind = args[0] if args else str
    if kind not in _SCALARS:
        raise MedlensError(
            f"training option {name!r} is not a single value and cannot be searched or set here"
        )
    return kind


def parse_value(name: str, text: str) -> Any:
    """``text`` as the type of TrainConfig field ``name``, checked by TrainConfig's own validation."""
    kind = field_kind(name)
    text = text.strip()
    try:
        if text.lower() in ("none", "null") and name in _OPTIONAL:
            value: Any = None
        elif kind is bool:
            if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError(text)
            value = text.lower() in ("true", "yes", "1")
        elif kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
        else:
            value = text
    except ValueError as err:
        raise MedlensError(f"{name}={text!r}: not {'a number' if kind in (int, float) else 'valid'}") from err
    if kind is str and not value:
        raise MedlensError(f"{name}: empty value")
    try:
        TrainConfig(**{name: value})
    except MedlensError as err:
        raise MedlensError(f"{name}={text}: {err}") from None
    return value


_OPTIONAL = {
    f.name
    for f in fields(TrainConfig)
    if type(None) in typing.get_args(typing.get_type_hints(TrainConfig).get(f.name, int))
}


def parse_grid(text: str) -> dict[str, list]:
    """``"dropout=0,0.1 lr=1e-4,1e-3"`` → ``{"dropout": [0.0, 0.1], "lr": [0.0001, 0.001]}``."""
    grid: dict[str, list] = {}
    for item in text.split():
        name, sep, values = item.partition("=")
        if not sep or not name or not values.strip(","):
            raise MedlensError(f"--grid needs name=v1,v2,... items separated by spaces, got {item!r}")
        if name in grid:
            raise MedlensError(f"--grid names {name!r} twice")
        parsed = [parse_value(name, v) for v in values.split(",") if v.strip()]
        grid[name] = list(dict.fromkeys(parsed))  # duplicates would be the same grid point twice
    if not grid:
        raise MedlensError('--grid is empty; give name=v1,v2,... items, e.g. "lr=1e-4,1e-3 dropout=0,0.2"')
    return grid


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=2", "model=cnn-small"]`` → ``{"epochs": 2, "model": "cnn-small"}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise MedlensError(f"--set needs KEY=VALUE, e.g. epochs=2; got {item!r}")
        out[name.strip()] = parse_value(name.strip(), value)
    return out


def grid_size(grid: dict[str, list]) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def parse_budget(text: str | float | int | None) -> float | None:
    """``"90s"``, ``"30m"``, ``"1.5h"`` (a bare number is minutes, as for ``medlens train --budget``), or a
    number of seconds from Python → seconds; None: no budget."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not text > 0:
            raise MedlensError(f"--budget must be positive, got {text!r}")
        return float(text)
    return parse_duration(text, "--budget")


def check_grid(grid: str | dict[str, list]) -> dict[str, list]:
    """``--grid`` text, or a dict name → values from Python, as ``{name: [typed values]}``."""
    if isinstance(grid, str):
        return parse_grid(grid)
    if not isinstance(grid, dict) or not grid:
        raise MedlensError("--grid must be name=v1,v2,... text or a non-empty dict of name: [values]")
    checked = {}
    for name, values in grid.items():
        field_kind(name)
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise MedlensError(f"--grid {name}: no values")
        checked[name] = [parse_value(name, str(v)) for v in dict.fromkeys(values)]
    return checked


def base_config(config, overrides: dict[str, Any], seed: int, space: dict | None) -> TrainConfig:
    """The configuration every trial starts from, and every trial checked before any runs: each ``--grid``
    value with the fixed options must be a valid configuration of a model that exists for the task."""
    for name in overrides:
        field_kind(name)
    clash = sorted(set(overrides) & set(space or {}))
    if clash:
        raise MedlensError(f"{clash[0]!r} is both searched (--grid) and fixed (--set); keep one")
    # every trial is scored on the one validation split the search carved: no refit on it
    values = {"seed": seed, **overrides, "final": False}
    cfg = TrainConfig.load(config, **values) if config else TrainConfig.from_dict(values)
    fixed = next((f"--set {k}={overrides[k]}: " for k in ("model", "task") if k in overrides), "")
    _check_trial(cfg, {}, fixed or (f"{config}: " if config else ""))
    for name, choices in (space or {}).items():
        for value in choices:
            _check_trial(cfg, {name: value}, f"--grid {name}={value}: ")
    return cfg


def _check_trial(base: TrainConfig, changes: dict[str, Any], where: str) -> None:
    """Refuse, before any trial, what every trial of ``base`` with ``changes`` would fail on (each trial would
    end in the same error): an invalid option, an unknown model (with a did-you-mean hint), or a model of
    another task."""
    try:
        cfg = base.replace(**changes)
        cfg.validate()
        check_model(cfg.model, cfg.task)
    except MedlensError as err:
        raise MedlensError(f"{where}{err}") from None
