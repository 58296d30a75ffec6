"""Patient history for the worklist: a CSV of one row per patient, falling back to the DICOM header.

The CSV has a ``patient_id`` column and any of ``age`` (years), ``sex``, ``prior_positive`` (the date of the
last positive finding, or empty), ``referral_priority`` (stat / urgent / routine, or a level of the config),
plus free columns that the config may weigh by name. When a study's patient has no row, :func:`history_for`
uses what the study's own DICOM header says (PatientAge "054Y", PatientSex, StudyDate/StudyTime).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.errors import MedlensError
from medlens.io.guard import read_table
from medlens.triaging.config import DEFAULT_REFERRAL_LEVELS

#: Columns with a meaning; every other column is a free one.
KNOWN_COLUMNS = ("patient_id", "age", "sex", "prior_positive", "referral_priority")
_DICOM_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([DWMY]?)\s*$", re.IGNORECASE)
_AGE_UNIT_YEARS = {"": 1.0, "Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y-%m", "%Y%m", "%Y/%m/%d", "%Y/%m")


def load_history(path: str | Path, *, levels: Iterable[str] | None = None) -> pd.DataFrame:
    """Read the patient-history CSV: one row per patient.

    Args:
        path: the CSV file.
        levels: the referral levels allowed (default: stat, urgent, routine); use the config's
            ``referral_levels`` keys.

    Returns:
        A frame with ``patient_id`` (str), ``age`` (float years, NaN when empty), ``sex`` (str, "" when
        empty), ``prior_positive`` (``datetime.date`` or None), ``referral_priority`` (lower case, "" when
        empty) and
        the free columns as text; columns the file lacks are added empty.

    Raises:
        MedlensError: no ``patient_id`` column, an empty or duplicated patient id, an age, date or referral
            level that cannot be read; each names the file, the row and what to do.
    """
    path = Path(path)
    df = read_table(path, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    if "patient_id" not in df.columns:
        raise MedlensError(
            f"history CSV {path} has no patient_id column (columns: {', '.join(df.columns)}); "
            "add one with a row per patient"
        )
    df = df.apply(lambda col: col.str.strip())
    allowed = sorted({str(x).strip().lower() for x in (levels or DEFAULT_REFERRAL_LEVELS)})
    ids = df["patient_id"]
    if (ids == "").any():
        row = int((ids == "").to_numpy().nonzero()[0][0]) + 2
        raise MedlensError(f"history CSV {path} row {row} has no patient_id; fill it in or delete the row")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        pid = dup.iloc[0]
        rows = ", ".join(str(i + 2) for i in dup.index[dup == pid])
        raise MedlensError(
            f"history CSV {path} lists patient {pid!r} more than once (rows {rows}); keep one row per patient"
        )
    out = df.copy()
    out["age"] = [_csv_age(v, path, i) for i, v in enumerate(df.get("age", [""] * len(df)))]
    out["sex"] = list(df.get("sex", [""] * len(df)))
    out["prior_positive"] = pd.Series(
        [_csv_date(v, path, i) for i, v in enumerate(df.get("prior_positive", [""] * len(df)))],
        index=df.index,
        dtype=object,
    )
    referral = [str(v).lower() for v in df.get("referral_priority", [""] * len(df))]
    for i, level in enumerate(referral):
        if level and level not in allowed:
            raise MedlensError(
                f"history CSV {path} row {i + 2}: unknown referral_priority {level!r}; use one of "
                f"{', '.join(allowed)} (or add it to referral_levels in the triage config)"
            )
    out["referral_priority"] = referral
    free = [c for c in df.columns if c not in KNOWN_COLUMNS]
    return out[[*KNOWN_COLUMNS, *free]].reset_index(drop=True)


def check_prior_dates(history: pd.DataFrame, now: datetime, path: str | Path) -> list[str]:
    """Report the ``prior_positive`` dates after ``now``: a finding in the future is no prior finding.

    Such a date is never counted (:func:`medlens.triaging.priority.score_study` says so in the study's
    reason); this names each one so the file can be fixed.

    Args:
        history: the frame of :func:`load_history`.
        now: the worklist's time.
        path: the history CSV (for the messages).

    Returns:
        One line per future date, naming the file and the row (empty when every date is in the past).

    Raises:
        MedlensError: every date of the file is in the future: the column is not what it says (a date
            format read the wrong way, or the wrong column), so none of it can be trusted.
    """
    today = now.date()
    dates = [(i, d) for i, d in enumerate(history["prior_positive"]) if isinstance(d, date)]
    future = [(i, d) for i, d in dates if (d.date() if isinstance(d, datetime) else d) > today]
    if future and len(future) == len(dates):
        i, d = future[0]
        raise MedlensError(
            f"history CSV {path}: every prior_positive date is after {today:%Y-%m-%d} (row {i + 2}: "
            f"{d:%Y-%m-%d}), so none is a prior finding; fix the dates (or the --now time)"
        )
    return [
        f"history CSV {path} row {i + 2}: prior_positive {d:%Y-%m-%d} is after {today:%Y-%m-%d}, so it is "
        "no prior finding; it is not counted (fix the date)"
        for i, d in future
    ]


def history_index(history: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """patient id -> that patient's row as a dict (empty without a history)."""
    if history is None:
        return {}
    return {str(r["patient_id"]): r for r in history.to_dict(orient="records")}


def history_for(
    record: Mapping[str, Any], history: pd.DataFrame | Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """What the worklist knows about one study's patient: the history row, else the DICOM header.

    Args:
        record: a study record (``patient_id``, ``study_time``, ``referral_priority``, ``dicom``, ...).
        history: the frame of :func:`load_history`, its :func:`history_index`, or None.

    Returns:
        ``{"patient_id", "age" (years or None), "sex", "prior_positive" (date or None), "referral_priority"
        (lower case or None), "study_time" (datetime or None), "sources": {field: "history" | "dicom" |
        "record"}, <free columns>}``. A value in the CSV wins over the record's and the header's; a field
        empty in the CSV falls back to them.

    Raises:
        MedlensError: the record's own ``study_time`` is not an ISO 8601 time.
    """
    pid = record.get("patient_id")
    pid = None if pid is None or (isinstance(pid, float) and math.isnan(pid)) else str(pid)
    if history is not None and not isinstance(history, Mapping):
        history = history_index(history)
    row = dict((history or {}).get(pid) or {}) if pid is not None else {}
    dicom = record.get("dicom") or {}
    sources: dict[str, str] = {}
    out: dict[str, Any] = {"patient_id": pid}

    def pick(name: str, *candidates: tuple[str, Any]) -> Any:
        for source, value in candidates:
            if not _empty(value):
                sources[name] = source
                return value
        return None

    out["age"] = pick("age", ("history", row.get("age")), ("dicom", parse_age(dicom.get("PatientAge"))))
    out["sex"] = pick("sex", ("history", row.get("sex")), ("dicom", _text(dicom.get("PatientSex"))))
    out["prior_positive"] = pick("prior_positive", ("history", row.get("prior_positive")))
    referral = pick(
        "referral_priority",
        ("history", row.get("referral_priority")),
        ("record", _text(record.get("referral_priority"))),
    )
    out["referral_priority"] = referral.lower() if isinstance(referral, str) else None
    out["study_time"] = pick(
        "study_time",
        ("record", parse_time(record.get("study_time"), what=f"study_time of {record.get('study')!r}")),
        ("dicom", dicom_time(dicom.get("StudyDate"), dicom.get("StudyTime"))),
    )
    for key, value in row.items():
        if key not in KNOWN_COLUMNS:
            out[key] = value
    out["sources"] = sources
    return out


def parse_age(value: Any) -> float | None:
    """Years from a DICOM age string ("054Y" -> 54, "006M" -> 0.5) or a number; None when empty/unreadable."""
    if _empty(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DICOM_AGE.match(str(value))
    if not m:
        return None
    return float(m.group(1)) * _AGE_UNIT_YEARS[m.group(2).upper()]


def parse_date(value: Any) -> date | None:
    """A date from "2025-03-14", "20250314", "2025-03" (first of the month) or an ISO time; None when empty.

    Raises:
        ValueError: a non-empty value in none of those forms.
    """
    if _empty(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return _iso(text).date()


def parse_time(value: Any, what: str = "time") -> datetime | None:
    """An ISO 8601 time ("2025-03-14T09:30", "...Z", "...+01:00"); None when empty.

    Raises:
        MedlensError: naming ``what`` when the value is not ISO 8601.
    """
    if _empty(value):
        return None
    if isinstance(value, datetime):
        return value
    try:
        return _iso(str(value).strip())
    except ValueError as err:
        raise MedlensError(
            f"{what} is {value!r}, not an ISO 8601 time; write it like 2025-03-14T09:30:00"
        ) from err


def dicom_time(study_date: Any, study_time: Any) -> datetime | None:
    """StudyDate ("20250314") and StudyTime ("093000.123", "0930") as a datetime; None when unreadable."""
    if _empty(study_date):
        return None
    try:
        day = datetime.strptime(str(study_date).strip()[:8], "%Y%m%d")
    except ValueError:
        return None
    digits = re.sub(r"[^0-9.]", "", str(study_time or "")).split(".")[0]
    digits = (digits + "000000")[:6] if digits else "000000"
    try:
        hh, mm, ss = int(digits[:2]), int(digits[2:4]), int(digits[4:6])
        return day.replace(hour=hh, minute=mm, second=min(ss, 59))
    except ValueError:
        return day


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)


def _csv_age(value: str, path: Path, i: int) -> float:
    if _empty(value):
        return math.nan
    age = parse_age(value)
    if age is None or not math.isfinite(age) or age < 0 or age > 150:
        raise MedlensError(
            f"history CSV {path} row {i + 2}: age {value!r} is not an age in years; "
            "write e.g. 54 (or leave it empty)"
        )
    return age


def _csv_date(value: str, path: Path, i: int) -> date | None:
    try:
        return parse_date(value)
    except ValueError as err:
        raise MedlensError(
            f"history CSV {path} row {i + 2}: prior_positive {value!r} is not a date; write it like "
            "2025-03-14 (or 2025-03), or leave it empty when the patient had no positive finding"
        ) from err


def _text(value: Any) -> str | None:
    return None if _empty(value) else str(value).strip()


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()
