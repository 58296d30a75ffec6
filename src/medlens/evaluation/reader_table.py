"""Reader tables of a reader study: reading and validating the readers CSV, normalising a reader DataFrame,
and simulated readers for tests and demos.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.errors import MedlensError, did_you_mean
from medlens.io.guard import read_table

_COLUMNS = ["case_id", "reader", "label_index", "probability"]


def load_readers(path: str | Path, class_names: Sequence[str]) -> pd.DataFrame:
    """Read a reader-study CSV: one row per (case_id, reader) with a ``label`` or a ``probability``.

    Args:
        path: CSV with columns ``case_id``, ``reader`` and ``label`` (a class name) and/or ``probability``
            (the reader's probability of the positive class, i.e. the second class; binary tasks only). A
            probability becomes a label at 0.5 (>= 0.5 is positive) and is kept; where both columns exist, a
            row's label wins and a blank label falls back to its probability. Case ids are read as strings
            ("007" stays "007"). Identical repeated rows are kept once.
        class_names: the model's classes in column order.

    Returns:
        DataFrame with columns ``case_id`` (str), ``reader`` (str), ``label_index`` (int) and
        ``probability`` (float, NaN where the reader gave a label).

    Raises:
        MedlensError: a missing or unreadable file, missing columns, an unknown label, a probability that is
            not a number in [0, 1] (or given for a task that is not binary), a blank case id or reader, or
            two rows for the same case and reader with different answers; each names the file.
    """
    path = Path(path)
    names = _class_names(class_names)
    df = read_table(path, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("case_id", "reader") if c not in df.columns]
    if missing or not {"label", "probability"} & set(df.columns):
        need = missing + ([] if {"label", "probability"} & set(df.columns) else ["label or probability"])
        raise MedlensError(
            f"reader table {path} lacks column(s) {need}; it has {list(df.columns)}. Give one row per "
            "(case_id, reader) with a label (a class name) or a probability of the positive class"
        )
    case_id = df["case_id"].astype(str).str.strip().to_numpy(dtype=object)
    reader = df["reader"].astype(str).str.strip().to_numpy(dtype=object)
    blank = np.flatnonzero((case_id == "") | (reader == ""))
    if blank.size:
        raise MedlensError(
            f"reader table {path} has {blank.size} row(s) with a blank case_id or reader (first on line "
            f"{blank[0] + 2}); fill them in or delete those rows"
        )
    n = len(df)
    label_text = (
        df["label"].astype(str).str.strip().to_numpy(dtype=object)
        if "label" in df.columns
        else np.full(n, "", dtype=object)
    )
    label_index = np.full(n, -1, dtype=np.int64)
    index = {cls: i for i, cls in enumerate(names)}
    has_label = label_text != ""
    mapped = np.array([index.get(t, -1) for t in label_text[has_label]], dtype=np.int64)
    bad = np.flatnonzero(mapped < 0)
    if bad.size:
        row = int(np.flatnonzero(has_label)[bad[0]])
        label = str(label_text[row])
        raise MedlensError(
            f"reader table {path} line {row + 2} has label {label!r}, which is not a class of the model "
            f"{names}.{did_you_mean(label, names)} Use the class names exactly ({bad.size} bad row(s) in all)"
        )
    label_index[has_label] = mapped
    probability = np.full(n, np.nan)
    if "probability" in df.columns:
        probability = _probabilities(df["probability"], path, names)
        from_prob = ~has_label & ~np.isnan(probability)
        label_index[from_prob] = (probability[from_prob] >= 0.5).astype(np.int64)
    empty = np.flatnonzero(label_index < 0)
    if empty.size:
        raise MedlensError(
            f"reader table {path} line {empty[0] + 2} (case {case_id[empty[0]]!r}, reader "
            f"{reader[empty[0]]!r}) gives neither a label nor a probability ({empty.size} such row(s)); "
            "fill them in or delete those rows"
        )
    out = pd.DataFrame(
        {
            "case_id": pd.Series(case_id, dtype=object),
            "reader": pd.Series(reader, dtype=object),
            "label_index": label_index,
            "probability": probability,
        }
    )
    return _dedupe(out, f"reader table {path}", "lines", offset=2)


def simulate_readers(
    y_true: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    skills: dict[str, float],
    seed: int = 0,
    case_ids: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Simulated readers, for tests and demos only: not a model of how radiologists err.

    Each reader independently gives the true label with probability ``skill`` and otherwise a class drawn
    uniformly from the other classes.

    Args:
        y_true: true class index per case, shape (N,).
        class_names: the class names in index order.
        skills: reader name -> probability in [0, 1] of reading a case correctly.
        seed: seed of the draws; the same seed gives the same reads.
        case_ids: id per case (default ``"0"``, ``"1"``, ...), stored as strings.

    Returns:
        DataFrame with columns ``case_id``, ``reader`` and ``label`` (class names), one row per case and
        reader, readers in the order of ``skills``.
    """
    names = _class_names(class_names)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= len(names)):
        raise MedlensError(f"y_true holds class indices outside 0..{len(names) - 1} for classes {names}")
    ids = [str(i) for i in (range(len(y)) if case_ids is None else case_ids)]
    if len(ids) != len(y):
        raise MedlensError(f"case_ids has {len(ids)} entries for {len(y)} cases; give one id per case")
    rng = np.random.default_rng(seed)
    parts = []
    for reader, skill in skills.items():
        if not 0.0 <= float(skill) <= 1.0:
            raise MedlensError(f"skill of reader {reader!r} is {skill}; give a probability between 0 and 1")
        correct = rng.random(len(y)) < float(skill)
        other = (y + rng.integers(1, len(names), size=len(y))) % len(names)
        label = np.where(correct, y, other)
        parts.append(
            pd.DataFrame(
                {
                    "case_id": pd.Series(ids, dtype=object),
                    "reader": str(reader),
                    "label": pd.Series(np.asarray(names, dtype=object)[label], dtype=object),
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ("case_id", "reader", "label")})
    return pd.concat(parts, ignore_index=True)


def _class_names(class_names: Sequence[str]) -> list[str]:
    names = [str(c) for c in class_names]
    if len(names) < 2 or len(set(names)) != len(names):
        raise MedlensError(f"class_names must hold at least 2 unique names, got {names}")
    return names


def _class_index(c: Any, n_classes: int, names: list[str], what: str) -> int:
    try:
        index = int(c)
    except (TypeError, ValueError):
        index = -1
    if index != c or not 0 <= index < n_classes:
        raise MedlensError(f"{what} class {c!r} is not a class index 0..{n_classes - 1} of {names}")
    return index


def _probabilities(column: pd.Series, path: Path, names: list[str]) -> np.ndarray:
    text = column.astype(str).str.strip()
    given = (text != "").to_numpy()
    values = pd.to_numeric(text.where(text != ""), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(given & ~((values >= 0) & (values <= 1)))
    if bad.size:
        raise MedlensError(
            f"reader table {path} line {bad[0] + 2} has probability {text.iloc[bad[0]]!r}, not a number in "
            f"[0, 1] ({bad.size} bad row(s)); give the reader's probability of {names[-1]!r}"
        )
    if given.any() and len(names) != 2:
        raise MedlensError(
            f"reader table {path} gives probabilities, but the task has {len(names)} classes; a probability "
            "is only meaningful for a binary task: give a label column with class names instead"
        )
    return values


def _dedupe(table: pd.DataFrame, source: str, unit: str, offset: int) -> pd.DataFrame:
    """Drop identical repeats of (case_id, reader); refuse repeats with different answers."""
    answers = table[["case_id", "reader", "label_index", "probability"]]
    distinct = answers.drop_duplicates()
    clash = distinct.duplicated(["case_id", "reader"], keep=False)
    if clash.any():
        first = distinct[clash].iloc[0]
        lines = table.index[(table["case_id"] == first["case_id"]) & (table["reader"] == first["reader"])]
        raise MedlensError(
            f"{source} has different answers for case {first['case_id']!r} by reader {first['reader']!r} "
            f"({unit} {', '.join(str(i + offset) for i in lines)}); keep one row per case and reader"
        )
    return table.loc[distinct.index].reset_index(drop=True)


def _reader_table(readers: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Normalise a reader DataFrame to ``case_id``, ``reader``, ``label_index``, ``probability``."""
    if not isinstance(readers, pd.DataFrame):
        raise MedlensError("readers must be a pandas DataFrame, e.g. what load_readers returned")
    has = set(readers.columns)
    if not {"case_id", "reader"} <= has or not has & {"label_index", "label"}:
        raise MedlensError(
            f"reader table lacks columns: needs case_id, reader and label_index (or label); has "
            f"{list(readers.columns)}. Load it with medlens.evaluation.readers.load_readers"
        )
    if readers.empty:
        raise MedlensError("reader table has no rows; give one row per (case_id, reader)")
    table = pd.DataFrame(
        {
            "case_id": readers["case_id"].astype(str).to_numpy(dtype=object),
            "reader": readers["reader"].astype(str).to_numpy(dtype=object),
        }
    )
    if "label_index" in has:
        label = pd.to_numeric(readers["label_index"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(label) | (label % 1 != 0) | (label < 0) | (label >= len(names))
        if bad.any():
            value = readers["label_index"].iloc[int(np.flatnonzero(bad)[0])]
            raise MedlensError(
                f"reader table has label_index {value!r}, not a class index 0..{len(names) - 1} of {names}"
            )
        table["label_index"] = label.astype(np.int64)
    else:
        index = {cls: i for i, cls in enumerate(names)}
        text = readers["label"].astype(str).to_numpy(dtype=object)
        label = np.array([index.get(t, -1) for t in text], dtype=np.int64)
        if (label < 0).any():
            value = str(text[int(np.flatnonzero(label < 0)[0])])
            hint = did_you_mean(value, names)
            raise MedlensError(f"reader table has label {value!r}, not a class of the model {names}.{hint}")
        table["label_index"] = label
    prob = readers["probability"] if "probability" in has else pd.Series(np.nan, index=readers.index)
    table["probability"] = pd.to_numeric(prob, errors="coerce").to_numpy(dtype=np.float64)
    return _dedupe(table, "reader table", "rows", offset=0)
