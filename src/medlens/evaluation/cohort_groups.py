"""Cohort groups: reading per-patient metadata, joining it to the cases, and assigning each case its group."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from medlens.errors import MedlensError, did_you_mean
from medlens.evaluation.cohort_spec import (
    _NA_STRINGS,
    MAX_CATEGORICAL_NUMBERS,
    MISSING,
    OTHER,
    Bin,
    CohortSpec,
    _fmt,
)


# -- metadata ----------------------------------------------------------------------------------------------
def load_metadata(path: str | Path) -> pd.DataFrame:
    """Read a per-patient metadata CSV keyed by ``patient_id`` (or ``Patient``, as in kaggle_3m's data.csv).

    Returns:
        The table with a string ``patient_id`` column first; exact duplicate rows are dropped.

    Raises:
        MedlensError: unreadable file, no id column (the message lists the columns), or a patient with two
            different rows.
    """
    from medlens.io.guard import read_table  # deferred like the other readers

    path = Path(path)
    df = read_table(path)
    if "patient_id" not in df.columns:
        if "Patient" not in df.columns:
            raise MedlensError(
                f"metadata {path} has no 'patient_id' or 'Patient' column (columns: {list(df.columns)}); "
                "add a patient_id column matching the cases' patient ids"
            )
        df = df.rename(columns={"Patient": "patient_id"})
    df["patient_id"] = df["patient_id"].astype(str).str.strip()
    df = df.drop_duplicates()
    twice = df["patient_id"][df["patient_id"].duplicated()].unique().tolist()
    if twice:
        raise MedlensError(
            f"metadata {path} has several different rows for patient(s) {twice[:5]}; keep one row per patient"
        )
    return df[["patient_id"] + [c for c in df.columns if c != "patient_id"]].reset_index(drop=True)


def attach_metadata(cases: pd.DataFrame, metadata: pd.DataFrame | None) -> pd.DataFrame:
    """Add the metadata columns to the cases: a left join on ``patient_id`` compared as strings.

    A case whose patient id is not in the metadata is matched to the longest metadata id that is its prefix
    followed by ``_`` (kaggle_3m: metadata ``TCGA_CS_4941`` vs case folder ``TCGA_CS_4941_19960909``).
    Columns the cases already have are kept, never overwritten. Cases without ``patient_id`` use
    ``case_id``. The number of cases matched is left in ``result.attrs["metadata_matched"]``.

    Returns:
        A new table with the cases' rows, order and index, plus the metadata columns (NaN where unmatched).
    """
    out = cases.copy()
    if metadata is None:
        return out
    key = "patient_id" if "patient_id" in cases.columns else "case_id"
    if key not in cases.columns:
        raise MedlensError(
            f"cases have no 'patient_id' or 'case_id' column (columns: {list(cases.columns)}); "
            "cannot attach metadata"
        )
    if "patient_id" not in metadata.columns:
        raise MedlensError(
            f"metadata has no 'patient_id' column (columns: {list(metadata.columns)}); "
            "read it with load_metadata"
        )
    meta = metadata.copy()
    meta["patient_id"] = meta["patient_id"].astype(str)
    meta = meta.drop_duplicates("patient_id")
    known = set(meta["patient_id"])
    ids = cases[key].astype(str).tolist()
    matched = [_match_id(pid, known) for pid in ids]
    extra = [c for c in meta.columns if c != "patient_id" and c not in cases.columns]
    joined = meta.set_index("patient_id")[extra].reindex(matched)
    for column in extra:
        out[column] = joined[column].to_numpy()
    out.attrs["metadata_matched"] = int(sum(m is not None for m in matched))
    return out


def _match_id(pid: str, known: set[str]) -> str | None:
    if pid in known:
        return pid
    cut = pid.rfind("_")
    while cut > 0:
        if pid[:cut] in known:
            return pid[:cut]
        cut = pid.rfind("_", 0, cut)
    return None


def resolve_column(df: pd.DataFrame, name: str) -> str:
    """The column of ``df`` that ``name`` stands for.

    The exact column, else the one equal ignoring case, else the unique column whose ``_``-separated tokens
    start with the name's tokens (ignoring case): ``age`` -> ``age_at_initial_pathologic``.

    Raises:
        MedlensError: no such column, or several candidates; the message lists the columns.
    """
    columns = [str(c) for c in df.columns]
    if name in columns:
        return name
    same = [c for c in columns if c.lower() == name.lower()]
    if len(same) == 1:
        return same[0]
    want = name.lower().split("_")
    hits = [c for c in columns if c.lower().split("_")[: len(want)] == want]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise MedlensError(f"cohort column {name!r} matches several columns {hits}; give the full name")
    raise MedlensError(
        f"no cohort column {name!r} in the cases or metadata (columns: {columns});"
        f"{did_you_mean(name, columns) or ' pass --metadata with a CSV that has it'}"
    )


# -- groups ------------------------------------------------------------------------------------------------
def assign_groups(df: pd.DataFrame, spec: CohortSpec, n_quantiles: int = 3) -> pd.Series:
    """The group label of every row for one cohort column (``missing`` where the value is missing).

    - a column with bins: the bin's label (``other`` for numbers in no bin);
    - a numeric column without bins and more than 6 distinct values: ``n_quantiles`` quantile bins labelled
      ``<44``, ``44-58``, ``>58`` (edges rounded to about two significant digits of the value range; the
      labels are exact: ``<44`` is below 44, ``44-58`` includes both edges, ``>58`` is above 58);
    - otherwise categories: the values as strings, numbers without a trailing ``.0`` (1.0 -> ``"1"``).

    Returns:
        Strings, indexed like ``df`` and named after the resolved column.
    """
    labels, _, _, _ = _groups(df, spec, n_quantiles)
    return labels


def _groups(df: pd.DataFrame, spec: CohortSpec, n_quantiles: int) -> tuple[pd.Series, list, list, str]:
    """(labels, bins or [], group order, resolved column)."""
    column = resolve_column(df, spec.column)
    raw = df[column]
    missing = raw.isna().to_numpy() | raw.astype(str).str.strip().str.lower().isin(_NA_STRINGS).to_numpy()
    numbers = pd.to_numeric(raw.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
    text = ~missing & np.isnan(numbers)
    numeric = not text.any()
    bins = [Bin(*b) for b in spec.bins] if spec.bins else []
    if bins and not numeric:
        bad = raw[text].astype(str).unique()[:3].tolist()
        raise MedlensError(
            f"cohort column {column!r} has bins but non-numeric values such as {bad}; "
            "remove the bins to use its values as categories"
        )
    if not bins and numeric and len(np.unique(numbers[~missing])) > MAX_CATEGORICAL_NUMBERS:
        bins = _quantile_bins(numbers[~missing], n_quantiles)
    labels = np.full(len(raw), MISSING, dtype=object)
    if bins:
        labels[~missing] = OTHER
        for b in reversed(bins):
            labels[b.contains(numbers) & ~missing] = b.label
        present = set(labels)
        order = [b.label for b in bins] + [g for g in (OTHER, MISSING) if g in present]
    else:
        if numeric:
            labels[~missing] = [_fmt(v) for v in numbers[~missing]]
        else:
            labels[~missing] = raw[~missing].astype(str).str.strip().to_numpy()
        counts = pd.Series(labels[~missing]).value_counts()
        order = sorted(counts.index, key=lambda g: (-counts[g], _natural(g)))
        order += [MISSING] if missing.any() else []
    return pd.Series(labels, index=df.index, name=column, dtype=object), bins, order, column


def _quantile_bins(values: np.ndarray, n: int) -> list[Bin]:
    if int(n) < 2:
        raise MedlensError(f"n_quantiles must be at least 2, got {n}")
    spread = float(values.max() - values.min())
    raw = np.quantile(values, np.arange(1, n) / n)
    decimals = max(0, 1 - math.floor(math.log10(spread))) if spread > 0 else 0
    edges = np.unique(np.round(raw, decimals))
    while len(edges) < len(np.unique(raw)) and decimals < 8:  # rounding merged distinct edges
        decimals += 1
        edges = np.unique(np.round(raw, decimals))
    edges = [float(e) for e in edges]
    if len(edges) == 1:
        return [Bin(f"<{_fmt(edges[0])}", None, edges[0]), Bin(f">={_fmt(edges[0])}", edges[0], None)]
    bins = [Bin(f"<{_fmt(edges[0])}", None, edges[0])]
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        bins.append(Bin(f"{_fmt(lo)}-{'' if last else '<'}{_fmt(hi)}", lo, hi))
    bins.append(Bin(f">{_fmt(edges[-1])}", edges[-1], None))
    return bins


def _natural(value: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", value))
