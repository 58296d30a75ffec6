"""One study's priority: ``Σ weight × factor`` over the factors, each in [0, 1], with a reason made of facts.

Factors (docs/triage.md): ``finding`` (the task's calibrated risk), ``review`` (1 when the study is out of
distribution or the model is unsure), ``prior_positive`` (a recent prior positive finding), ``referral`` (the
referral level), ``age`` (1 above ``age_over``), ``wait`` (hours waited / ``wait_full_hours``, capped at 1),
and any weighted history column. An unreadable study is never scored: its priority is +inf ("read first").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from medlens.errors import MedlensError
from medlens.triaging.config import TriageConfig

#: ``finding(record, cfg) -> (score in [0, 1], detail)``: the task's part of the priority.
FindingFn = Callable[[Mapping[str, Any], TriageConfig], tuple[float, str]]
UNREADABLE = "read first, unreadable"
_DAYS_PER_MONTH = 365.25 / 12
_YES = {"1", "yes", "y", "true", "t", "x"}
_NO = {"0", "no", "n", "false", "f", ""}


def score_study(
    record: Mapping[str, Any],
    cfg: TriageConfig,
    finding_fn: FindingFn,
    history_row: Mapping[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """Score one study.

    Args:
        record: the study record (``study``, ``error``, ``ood``, ``confidence``, ``probabilities``, ...).
        cfg: the weights and thresholds.
        finding_fn: the task's finding function.
        history_row: what :func:`medlens.triaging.history.history_for` returned for it (None: nothing known).
        now: the time the worklist is built (naive times count as local time).

    Returns:
        ``{"study", "unreadable", "factors": {name: 0-1}, "contributions": {name: weight × factor},
        "priority" (float; +inf when unreadable), "wait_minutes" (float or None), "reason"}``.

    Raises:
        MedlensError: an unknown referral level, or a weighted history column holding something other than a
            number in [0, 1] or yes/no.
    """
    hist = dict(history_row or {})
    study = str(record.get("study", record.get("input", "")))
    study_time = hist.get("study_time")
    wait = _wait_minutes(study_time, now)
    factors = dict.fromkeys(cfg.factors, 0.0)
    if record.get("error"):
        return {
            "study": study,
            "unreadable": True,
            "factors": factors,
            "contributions": dict(factors),
            "priority": math.inf,
            "wait_minutes": wait,
            "reason": f"{UNREADABLE}: {_one_line(record['error'])}",
        }
    parts: dict[str, str] = {}

    score, detail = finding_fn(record, cfg)
    score = float(score) if score is not None else math.nan
    if math.isfinite(score):
        factors["finding"] = min(1.0, max(0.0, score))
        parts["finding"] = str(detail)
    else:  # a task that cannot score the study: a person must look (raised, never lowered)
        factors["review"] = 1.0
        parts["finding"] = "finding score undefined: review"

    ood = record.get("ood") or {}
    confidence = _confidence(record)
    if ood.get("flag"):
        factors["review"] = 1.0
        parts["review"] = "out of distribution: review"
    elif confidence is not None and confidence < cfg.low_confidence:
        factors["review"] = 1.0
        parts["review"] = f"low confidence {confidence:.2f}: review"

    notes: list[str] = []  # facts that change nothing but must not pass silently
    prior = hist.get("prior_positive")
    if isinstance(prior, (date, datetime)):
        when = prior_reference(study_time, now)
        if _day(prior) > _day(when):  # a "prior" dated after the study is a data error, never a prior
            notes.append(f"prior positive {_day(prior):%Y-%m-%d} is after the study: not counted")
        else:
            factors["prior_positive"] = _prior_factor(prior, when, cfg.prior_positive_months)
            parts["prior_positive"] = f"prior positive {prior:%Y-%m}"

    level = hist.get("referral_priority")
    if level:
        level = str(level).strip().lower()
        if level not in cfg.referral_levels:
            raise MedlensError(
                f"study {study!r}: unknown referral priority {level!r}; use one of "
                f"{', '.join(cfg.referral_levels)} or add it to referral_levels in the triage config"
            )
        factors["referral"] = cfg.referral_levels[level]
        parts["referral"] = f"{level} referral"

    age = hist.get("age")
    if age is not None and not (isinstance(age, float) and math.isnan(age)) and float(age) > cfg.age_over:
        factors["age"] = 1.0
        parts["age"] = f"age {float(age):g}"

    for column in cfg.history_columns:
        value = hist.get(column, record.get(column))
        factors[column] = free_factor(value, column, study)
        parts[column] = f"{column} {value}"

    if wait is not None:
        factors["wait"] = min(1.0, wait / (60.0 * cfg.wait_full_hours))

    contributions = {k: cfg.weights[k] * v for k, v in factors.items()}
    reason = [parts["finding"]]
    reason += [parts[k] for k in cfg.factors if k in parts and k != "finding" and contributions[k] > 0]
    reason += notes
    reason.append(f"waited {format_wait(wait)}" if wait is not None else "arrival time unknown")
    return {
        "study": study,
        "unreadable": False,
        "factors": factors,
        "contributions": contributions,
        "priority": float(sum(contributions.values())),
        "wait_minutes": wait,
        "reason": "; ".join(reason),
    }


def free_factor(value: Any, column: str, study: str = "") -> float:
    """A history column's factor: a number in [0, 1] as is, yes/true/1 -> 1, no/false/0/empty -> 0.

    Raises:
        MedlensError: any other value, naming the column and the study.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    if isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    if text in _YES:
        return 1.0
    if text in _NO:
        return 0.0
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise MedlensError(
            f"history column {column!r} holds {value!r} for study {study!r}; the triage config weighs it, so "
            "it must be a number from 0 to 1 or yes/no"
        )
    return number


def format_wait(minutes: float) -> str:
    """ "3 h 10 min", "45 min", "0 min"."""
    total = round(max(0.0, float(minutes)))
    hours, mins = divmod(total, 60)
    return f"{hours} h {mins} min" if hours else f"{mins} min"


def as_aware(t: datetime) -> datetime:
    """``t`` with a time zone (a naive time is local time)."""
    return t if t.tzinfo is not None else t.astimezone()


def _wait_minutes(study_time: Any, now: datetime) -> float | None:
    if not isinstance(study_time, datetime):
        return None
    return max(0.0, (as_aware(now) - as_aware(study_time)).total_seconds() / 60.0)


def prior_reference(study_time: Any, now: datetime) -> datetime:
    """The time a prior finding must precede: the study's arrival, never later than the worklist's time."""
    if not isinstance(study_time, datetime):
        return now
    return min(as_aware(study_time), as_aware(now))


def _day(t: date | datetime) -> date:
    return t.date() if isinstance(t, datetime) else t


def _prior_factor(prior: date, when: datetime | date, months: float) -> float:
    """1 within ``months`` before ``when``, linear down to 0 at twice that (callers drop later priors)."""
    age_months = (_day(when) - _day(prior)).days / _DAYS_PER_MONTH
    if age_months <= months:
        return 1.0
    return max(0.0, (2 * months - age_months) / months)


def _confidence(record: Mapping[str, Any]) -> float | None:
    """The record's confidence, else its top-class probability, else None."""
    value = record.get("confidence")
    if value is None:
        probs = record.get("probabilities") or {}
        value = max(probs.values()) if probs else None
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _one_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else "unknown error"
