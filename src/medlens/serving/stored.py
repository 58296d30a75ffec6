"""What a study stores beside its image (referral priority, study time), checked twice: when it is uploaded,
so that nothing the worklist cannot use is stored, and when the worklist is built, so that a row stored
before the check (or written into the database by hand) is shown with the reason and never breaks the list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from medlens.errors import MedlensError
from medlens.serving.params import Refused
from medlens.triaging.config import TriageConfig
from medlens.triaging.history import parse_time


def referral_levels(cfg: TriageConfig | None = None) -> list[str]:
    """The referral priorities the worklist weighs (stat, urgent, routine by default)."""
    return list((cfg or TriageConfig()).referral_levels)


def check_referral(value: str | None, cfg: TriageConfig | None = None) -> str | None:
    """``value`` in lower case when it is a referral level of the worklist's config; None when empty.

    Raises:
        Refused: (400) any other value, listing the allowed ones.
    """
    text = (value or "").strip().lower()
    if not text:
        return None
    levels = referral_levels(cfg)
    if text not in levels:
        raise Refused(f"referral_priority must be one of {', '.join(levels)}; got {value!r}")
    return text


def check_study_time(value: str | None) -> str | None:
    """``value`` when it is an ISO 8601 time; None when empty.

    Raises:
        Refused: (400) a value that is not ISO 8601, naming the field.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        parse_time(text, what="study_time")
    except MedlensError as err:
        raise Refused(str(err)) from None
    return text


def study_record(study, prediction, cfg: TriageConfig) -> tuple[dict[str, Any], list[str]]:
    """The worklist record of a stored study and its prediction, and the notes on what was ignored.

    Args:
        study: the :class:`~medlens.serving.db.Study` row.
        prediction: its :class:`~medlens.serving.db.Prediction` row.
        cfg: the worklist's triage config.

    Returns:
        ``(record, notes)`` as :func:`usable_record` returns them; a study without a usable study time
        arrived when it was uploaded.
    """
    record = {
        **(prediction.record or {}),
        "input": study.original_name,
        "study": str(study.id),
        "patient_id": study.patient_id,
        "referral_priority": study.referral_priority,
        "study_time": study.study_time,
    }
    record, notes = usable_record(record, cfg)
    record["study_time"] = record["study_time"] or study.created.isoformat()
    return record, notes


def guarded_finding(task, notes: dict[str, list[str]]) -> Callable[[Mapping[str, Any], TriageConfig], Any]:
    """The task's finding function for the worklist, where a stored prediction it cannot score is flagged
    for review (with a note on its row) instead of failing the whole list."""

    def finding(record: Mapping[str, Any], cfg: TriageConfig):
        try:
            return task.triage_score(dict(record), cfg.urgent_classes)
        except (MedlensError, KeyError, TypeError, ValueError, AttributeError) as err:
            text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            notes.setdefault(str(record.get("study")), []).append(
                f"stored prediction unusable ({text[:120]})"
            )
            return math.nan, "unusable"

    return finding


def usable_record(record: Mapping[str, Any], cfg: TriageConfig) -> tuple[dict[str, Any], list[str]]:
    """A worklist record without the stored fields the worklist cannot use, and a note per field dropped.

    Args:
        record: the study's record (``referral_priority``, ``study_time``, ...) as stored.
        cfg: the worklist's triage config (its referral levels).

    Returns:
        ``(record, notes)``: the record with each unusable field emptied, and one short note for each, e.g.
        "stored referral 'asap!!' ignored (not stat, urgent, routine)"; a prediction whose scores are not
        numbers becomes an ``error`` (the worklist ranks it first for a person to read).
    """
    out, notes = dict(record), []
    referral = out.get("referral_priority")
    if referral not in (None, ""):
        try:
            out["referral_priority"] = check_referral(str(referral), cfg)
        except Refused:
            out["referral_priority"] = None
            levels = ", ".join(referral_levels(cfg))
            notes.append(f"stored referral {str(referral)[:40]!r} ignored (not {levels})")
    when = out.get("study_time")
    if when not in (None, ""):
        try:
            parse_time(when, what="study_time")
        except MedlensError:
            out["study_time"] = None
            notes.append(f"stored study_time {str(when)[:40]!r} ignored (not an ISO 8601 time)")
    if not out.get("error") and not _scores_ok(out):  # a person must look: ranked first, with the reason
        out["error"] = "stored prediction unusable (its probabilities are not numbers); predict it again"
    return out, notes


def _scores_ok(record: Mapping[str, Any]) -> bool:
    """Whether the stored probabilities (class -> number) and confidence are numbers the worklist can use."""
    probs = record.get("probabilities")
    values = list(probs.values()) if isinstance(probs, Mapping) else None
    if probs is not None and values is None:
        return False
    confidence = record.get("confidence")
    for value in [*(values or []), *([] if confidence is None else [confidence])]:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
    return True
