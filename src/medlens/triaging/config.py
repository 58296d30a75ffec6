"""The worklist's settings: which findings are urgent, how much each factor weighs, and the thresholds.

A study's priority is ``Σ weight × factor`` over the factors below, each factor in [0, 1] (see
docs/triage.md). The settings come from a YAML file of ``key: value`` lines; unknown keys and bad values are
refused with one line. ``weights`` and ``referral_levels`` given in the file are merged into the defaults, so
a file may change one weight without repeating the others.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlens.errors import MedlensError, did_you_mean

#: The built-in factors and their default weights. Any other key of ``weights`` names a history column.
DEFAULT_WEIGHTS: dict[str, float] = {
    "finding": 10.0,
    "review": 3.0,
    "prior_positive": 2.0,
    "referral": 3.0,
    "age": 1.0,
    "wait": 1.0,
}
FACTORS: tuple[str, ...] = tuple(DEFAULT_WEIGHTS)
DEFAULT_REFERRAL_LEVELS: dict[str, float] = {"stat": 1.0, "urgent": 0.5, "routine": 0.0}


def default_urgent(class_names: list[str]) -> dict[str, float]:
    """Every class whose name does not mean "nothing found" (normal, notumor, negative, no finding, ...), each
    with weight 1; the last class when every name means "nothing found".

    The same rule as the classification task's (:func:`medlens.tasks.classification.default_urgent`), which
    it calls, so the worklist and ``medlens explain`` agree on what is urgent.
    """
    # deferred: medlens.tasks.classification imports torch; loading a worklist config must not
    from medlens.tasks.classification import default_urgent as task_default_urgent

    names = [str(c) for c in class_names]
    if not names:
        raise MedlensError("default_urgent needs at least one class name")
    return task_default_urgent(names)


@dataclass
class TriageConfig:
    """How the worklist ranks studies.

    Attributes:
        urgent_classes: class name -> weight of its probability in the finding factor (classification);
            None lets the task decide (:func:`default_urgent`: every class not named like normal/notumor/
            negative/no finding).
        weights: factor -> weight. Built-in factors: ``finding`` (10: the model's calibrated risk
            dominates), ``review`` (3: out-of-distribution or low-confidence studies need a human look),
            ``prior_positive`` (2), ``referral`` (3: the referring clinician's stated urgency), ``age`` (1),
            ``wait`` (1: a long-waiting study slowly climbs). Any other key names a history column (0-1,
            yes/no) whose value is its factor.
        referral_levels: referral priority (lower case) -> factor; stat 1.0, urgent 0.5, routine 0.0.
        low_confidence: a top-class probability below this asks for review (0.6).
        age_over: patients older than this many years get the age factor 1 (65).
        wait_full_hours: the wait factor is hours waited / this, capped at 1 (24).
        prior_positive_months: a prior positive finding within this many months counts 1, decaying linearly to
            0 at twice that (24).
    """

    urgent_classes: dict[str, float] | None = None
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    referral_levels: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_REFERRAL_LEVELS))
    low_confidence: float = 0.6
    age_over: float = 65.0
    wait_full_hours: float = 24.0
    prior_positive_months: float = 24.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "triage config") -> None:
        """Refuse bad values with one line naming ``source``; normalise the mappings (floats, lower-case
        referral levels, every built-in weight present)."""
        if self.urgent_classes is not None:
            urgent = _mapping(self.urgent_classes, "urgent_classes", source)
            if not urgent:
                raise MedlensError(
                    f"{source}: urgent_classes is empty; name at least one class (e.g. glioma: 1.0) or "
                    "leave it out to let the task decide"
                )
            self.urgent_classes = {
                str(k): _number(v, f"urgent_classes.{k}", source, 0.0) for k, v in urgent.items()
            }
        weights = _mapping(self.weights, "weights", source)
        self.weights = {
            **DEFAULT_WEIGHTS,
            **{str(k): _number(v, f"weights.{k}", source, 0.0) for k, v in weights.items()},
        }
        levels = _mapping(self.referral_levels, "referral_levels", source)
        self.referral_levels = {
            str(k).strip().lower(): _number(v, f"referral_levels.{k}", source, 0.0, 1.0)
            for k, v in levels.items()
        }
        self.low_confidence = _number(self.low_confidence, "low_confidence", source, 0.0, 1.0)
        self.age_over = _number(self.age_over, "age_over", source, 0.0)
        self.wait_full_hours = _number(self.wait_full_hours, "wait_full_hours", source, 0.0, positive=True)
        self.prior_positive_months = _number(
            self.prior_positive_months, "prior_positive_months", source, 0.0, positive=True
        )

    @property
    def history_columns(self) -> list[str]:
        """The weighted history columns (every key of ``weights`` that is not a built-in factor)."""
        return [k for k in self.weights if k not in FACTORS]

    @property
    def factors(self) -> list[str]:
        """Built-in factors, then the weighted history columns, in the order the worklist shows them."""
        return [*FACTORS, *self.history_columns]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "triage config") -> TriageConfig:
        """Build from a mapping; unknown keys are refused naming ``source``."""
        if not isinstance(data, dict):
            raise MedlensError(f"{source} must be a mapping of key: value lines, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise MedlensError(
                    f"{source}: unknown key {key!r}.{did_you_mean(str(key), names)} "
                    f"Valid keys: {', '.join(names)}"
                )
        cfg = cls.__new__(cls)
        defaults = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(defaults, f.name, default)
            setattr(cfg, f.name, data.get(f.name, default))
        if isinstance(data.get("referral_levels"), dict):  # merged into the defaults, like weights
            cfg.referral_levels = {**defaults.referral_levels, **data["referral_levels"]}
        cfg.validate(source)
        return cfg

    @classmethod
    def load(cls, path: str | Path | None = None) -> TriageConfig:
        """Read a YAML file (plain data only, never code); None gives the defaults.

        Raises:
            MedlensError: a missing or unreadable file, unknown keys, or bad values, naming the file.
        """
        if path is None:
            return cls()
        import yaml  # deferred: only a config file needs it

        path = Path(path)
        if not path.is_file():
            raise MedlensError(f"triage config {path} does not exist; give a YAML file or leave it out")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise MedlensError(
                f"cannot read triage config {path}: {first}; it must be a UTF-8 YAML file of key: value lines"
            ) from err
        return cls.from_dict(data or {}, source=f"triage config {path}")


def _mapping(value: Any, name: str, source: str) -> dict:
    if not isinstance(value, dict):
        raise MedlensError(f"{source}: {name} must be a mapping of name: number, got {value!r}")
    return value


def _number(
    value: Any, name: str, source: str, low: float, high: float | None = None, positive: bool = False
) -> float:
    """``value`` as a finite float within [low, high] (above low when ``positive``), else one line."""
    rng = (
        f"between {low:g} and {high:g}"
        if high is not None
        else ("above 0" if positive else f"at least {low:g}")
    )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MedlensError(f"{source}: {name} must be a number {rng}, got {value!r}")
    v = float(value)
    bad = not math.isfinite(v) or v < low or (high is not None and v > high) or (positive and v <= 0)
    if bad:
        raise MedlensError(f"{source}: {name} must be a number {rng}, got {value!r}")
    return v
