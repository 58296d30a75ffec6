"""The side files of a run that every command applies: ``calibration.json`` and ``operating_point.json``.

Both are checked when read, so that a damaged or hand-edited file is refused in one line naming it, never
applied silently:

- ``calibration.json``: ``T`` must be a finite number in [:data:`T_MIN`, :data:`T_MAX`]. Temperature scaling
  divides the scores by T; T <= 0 flips or erases every decision, NaN makes every probability NaN, and a T
  outside the range flattens every probability to 1/C (T = 1e308) or turns it into 0/1. A fit on real
  validation data lands between ~0.5 and ~5; a fitted T outside the range means the fit degenerated (a
  handful of cases, all classified correctly or all wrongly), which ``medlens calibrate`` refuses to store.
- ``operating_point.json``: ``class`` must be one of the model's classes and ``threshold`` a number strictly
  between 0 and 1 (what ``evaluate --threshold`` accepts).

The facts ``medlens train`` wrote (``train.json``, ``config.yaml``) are read with :func:`read_run_json` and
:func:`read_run_yaml`: absent is empty, unreadable or not a mapping is one line naming the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from medlens.errors import MedlensError

CALIBRATION_FILE = "calibration.json"
OPERATING_POINT_FILE = "operating_point.json"
#: The temperatures medlens accepts (see the module docstring).
T_MIN, T_MAX = 0.05, 20.0


def read_run_file(path: Path, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """A run's JSON side file, or None when absent; unreadable or lacking ``keys``: refused in one line."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MedlensError(
            f"cannot read {path}: {err}; delete it and run the command that writes it again"
        ) from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise MedlensError(f"{path} lacks {missing}; delete it and run the command that writes it again")
    return data


def read_run_json(path: Path) -> dict[str, Any]:
    """A JSON mapping the run holds (train.json, summary.json), ``{}`` when absent.

    Raises:
        MedlensError: the file is unreadable, not JSON, or not a mapping (naming it, and what to do).
    """
    return _mapping(path, json.loads)


def read_run_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping the run holds (config.yaml), ``{}`` when absent or empty.

    Raises:
        MedlensError: the file is unreadable, not YAML, or not a mapping (naming it, and what to do).
    """
    return _mapping(path, yaml.safe_load)


def _mapping(path: Path, parse) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MedlensError(f"{path} is damaged ({reason}); {_REWRITE}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MedlensError(f"{path} is damaged (it holds a {type(data).__name__}, not a mapping); {_REWRITE}")
    return data


_REWRITE = "medlens train wrote it: copy it from the run that made it, or re-train"


def temperature_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable temperature (None when it is one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"T is {value!r}, not a number"
    if not math.isfinite(value):
        return f"T is {value}, not a finite number"
    if not T_MIN <= value <= T_MAX:
        return f"T = {value:g} is outside the sane range [{T_MIN:g}, {T_MAX:g}] of temperature scaling"
    return None


def read_calibration(run_dir: Path) -> dict[str, Any] | None:
    """``RUN/calibration.json`` checked (see the module docstring), or None when the run is not calibrated.

    Raises:
        MedlensError: naming the file, what is wrong, and what to do.
    """
    path = Path(run_dir) / CALIBRATION_FILE
    data = read_run_file(path, ("method", "T"))
    if data is None:
        return None
    if data["method"] != "temperature":
        problem = f"method {data['method']!r} is not 'temperature' (the only one medlens applies)"
    else:
        problem = temperature_problem(data["T"])
    if problem:
        raise MedlensError(
            f"{path} is damaged: {problem}; run `medlens calibrate {run_dir}` again, or delete the file "
            "to use the uncalibrated probabilities"
        )
    return {**data, "T": float(data["T"])}


def operating_point_problem(point: dict[str, Any], classes: list[str]) -> str | None:
    """Why ``{"class", "threshold"}`` is not usable with a model of ``classes`` (None when it is)."""
    cls, threshold = point.get("class"), point.get("threshold")
    if not isinstance(cls, str) or cls not in classes:
        return f"class {cls!r} is not one of the model's classes {classes}"
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        return f"threshold {threshold!r} is not a number"
    if not (math.isfinite(threshold) and 0 < threshold < 1):
        return f"threshold {threshold} is not between 0 and 1 (exclusive)"
    return None


def read_operating_point(run_dir: Path, classes: list[str]) -> dict[str, Any] | None:
    """``RUN/operating_point.json`` checked against the model's ``classes``, or None when absent.

    Raises:
        MedlensError: naming the file, what is wrong, and what to do.
    """
    path = Path(run_dir) / OPERATING_POINT_FILE
    data = read_run_file(path, ("class", "threshold"))
    if data is None:
        return None
    problem = operating_point_problem(data, classes)
    if problem:
        raise MedlensError(
            f"{path} is damaged: {problem}; set it again with `medlens evaluate {run_dir} --threshold T "
            "--positive CLASS`, or delete the file to decide by the most probable class"
        )
    return {**data, "threshold": float(data["threshold"])}
