"""Cohorts and a fairness audit: how a model's metrics differ between groups of cases, for any task.

A cohort column (``gender``, ``age``, ``site``, ...) splits the cases into groups; every group is scored by a
caller-supplied function (the task's own metrics and confidence intervals, so this module knows nothing about
the task), and each metric is compared with the same metric in a reference group as a ratio.

The audit follows seismometer's fairness table (``src/seismometer/table/fairness.py`` in
epic-open-source/seismometer: ``fairness_table`` and ``FairnessIcons.get_fairness_icon``):

- the reference group of a column is its largest group (here: the largest *uncensored* group, preferring a
  real value over ``missing``), and every metric is divided by the reference group's value;
- groups with fewer than ``min_cell`` patients (seismometer's ``censor_threshold``, 10; patients are the
  independent units: 300 slices of 3 patients are 3 observations, not 300) are censored: their
  metrics and ratios are hidden;
- a ratio is flagged in both directions, within a band that is multiplicatively symmetric around 1.

The bands are seismometer's, for its fairness limit ``L`` (``tolerance``, default 0.25, seismometer's
``fairness_ratio`` default): ``"ok"`` when ``1 / (1 + L) <= ratio <= 1 + L`` (0.8-1.25); ``"critical"`` beyond
twice the limit, ``ratio > 1 + 2L`` or ``ratio < 1 / (1 + 2L)`` (above 1.5 or below 0.667); ``"flag"``
between.

Cohort syntax (:func:`parse_cohorts`): ``gender,age:<40,40-60,>60`` - comma-separated column names; a name
followed by ``:`` starts a list of numeric bins, and the tokens after it that look like bins belong to it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from medlens.errors import MedlensError, did_you_mean

SYNTAX = "COL[,COL...] where a numeric column may carry bins, e.g. 'gender,age:<40,40-60,>60'"
MISSING = "missing"
OTHER = "other"  # numeric values that fall in none of the given bins
MAX_CATEGORICAL_NUMBERS = 6  # a numeric column with more distinct values than this is binned at quantiles
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ONE_SIDED = re.compile(rf"^(<=|>=|<|>)\s*({_NUMBER})$")
_RANGE = re.compile(rf"^({_NUMBER})\s*-(<?)\s*({_NUMBER})$")
_NA_STRINGS = {"", "nan", "na", "n/a", "none", "null", "<na>"}


class Bin(NamedTuple):
    """One numeric bin: ``(label, low, high)`` with None for an open side.

    Which edges belong to the bin is read from the label: ``<N`` is ``x < N``, ``<=N`` is ``x <= N``, ``>N``
    is ``x > N``, ``>=N`` is ``x >= N``, ``A-B`` is ``A <= x <= B`` (both edges included), and ``A-<B``
    (used between quantile bins) is ``A <= x < B``.
    """

    label: str
    low: float | None
    high: float | None

    @property
    def includes_low(self) -> bool:
        return self.low is not None and not (self.label.startswith(">") and not self.label.startswith(">="))

    @property
    def includes_high(self) -> bool:
        if self.high is None:
            return False
        if self.label.startswith("<"):
            return self.label.startswith("<=")
        return "-<" not in self.label

    def contains(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the values inside the bin (NaN is in no bin)."""
        inside = ~np.isnan(values)
        if self.low is not None:
            inside &= values >= self.low if self.includes_low else values > self.low
        if self.high is not None:
            inside &= values <= self.high if self.includes_high else values < self.high
        return inside

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "low": self.low,
            "high": self.high,
            "includes_low": self.includes_low,
            "includes_high": self.includes_high,
        }


@dataclass
class CohortSpec:
    """One cohort column as the user named it, with optional numeric bins.

    Attributes:
        column: the name given (resolved against the table by :func:`resolve_column`, so ``age`` may stand
            for ``age_at_initial_pathologic``); also the display name in :func:`cohort_analysis`'s result.
        bins: ``[(label, low, high), ...]`` (:class:`Bin`, None = open side) in the order given, or None.
    """

    column: str
    bins: list[tuple[str, float | None, float | None]] | None = None


# -- parsing ---------------------------------------------------------------------------------------------
def parse_cohorts(text: str) -> list[CohortSpec]:
    """Parse ``COL[,COL...]`` with optional numeric bins: ``gender,age:<40,40-60,>60``.

    A token containing ``:`` starts a binned column (``age:<40``); the tokens after it that look like bins
    (``<N``, ``<=N``, ``>N``, ``>=N``, ``A-B``) belong to it. Edges: ``<40`` is age < 40, ``40-60`` is
    40 <= age <= 60 (both ends included), ``>60`` is age > 60, ``<=N`` and ``>=N`` include N. Values in no
    bin form the group ``other``; missing values the group ``missing``.

    Raises:
        MedlensError: empty or malformed text, a bin outside a binned column, bins that overlap, a column
            listed twice; the message shows the expected syntax.
    """
    tokens = [t.strip() for t in str(text or "").split(",")]
    if not any(tokens):
        raise MedlensError(f"no cohort columns given; expected {SYNTAX}")
    specs: list[CohortSpec] = []
    binned: CohortSpec | None = None
    for token in tokens:
        if not token:
            raise MedlensError(f"empty entry in cohorts {text!r}; expected {SYNTAX}")
        if ":" in token:
            name, _, first = (part.strip() for part in token.partition(":"))
            if not name or ":" in first or not first:
                raise MedlensError(f"cannot read cohort {token!r} in {text!r}; expected {SYNTAX}")
            binned = CohortSpec(name, [_parse_bin(first, text)])
            specs.append(binned)
        elif _looks_like_bin(token):
            if binned is None:
                raise MedlensError(
                    f"bin {token!r} in cohorts {text!r} follows no binned column; expected {SYNTAX}"
                )
            binned.bins.append(_parse_bin(token, text))
        else:
            if not re.fullmatch(r"[^<>=]+", token):
                raise MedlensError(f"cannot read cohort {token!r} in {text!r}; expected {SYNTAX}")
            binned = None
            specs.append(CohortSpec(token, None))
    names = [s.column for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MedlensError(f"cohort column(s) {twice} listed twice in {text!r}; list each column once")
    for spec in specs:
        if spec.bins:
            _check_bins(spec, text)
    return specs


def _looks_like_bin(token: str) -> bool:
    return bool(_ONE_SIDED.match(token) or _RANGE.match(token))


def _parse_bin(token: str, text: str) -> Bin:
    token = token.replace(" ", "")
    one = _ONE_SIDED.match(token)
    if one:
        op, value = one.group(1), float(one.group(2))
        label = f"{op}{_fmt(value)}"
        return Bin(label, None, value) if op.startswith("<") else Bin(label, value, None)
    rng = _RANGE.match(token)
    if rng:
        low, high = float(rng.group(1)), float(rng.group(3))
        half_open = bool(rng.group(2))
        if low > high or (half_open and low == high):
            raise MedlensError(f"bin {token!r} in {text!r} is empty (low above high); write it as low-high")
        return Bin(f"{_fmt(low)}-{'<' if half_open else ''}{_fmt(high)}", low, high)
    raise MedlensError(f"cannot read bin {token!r} in {text!r}; expected <N, <=N, >N, >=N or A-B ({SYNTAX})")


def _check_bins(spec: CohortSpec, text: str) -> None:
    bins = [Bin(*b) for b in spec.bins or []]
    labels = [b.label for b in bins]
    for i, a in enumerate(bins):
        for b in bins[i + 1 :]:
            if _overlap(a, b):
                raise MedlensError(
                    f"bins {a.label!r} and {b.label!r} of cohort {spec.column!r} overlap in {text!r}; "
                    "each value must fall in one bin (<40: below 40, 40-60: 40 to 60 inclusive, >60: above)"
                )
    if len(set(labels)) != len(labels):
        raise MedlensError(f"cohort {spec.column!r} lists a bin twice in {text!r}")


def _overlap(a: Bin, b: Bin) -> bool:
    lo_a, hi_a = -math.inf if a.low is None else a.low, math.inf if a.high is None else a.high
    lo_b, hi_b = -math.inf if b.low is None else b.low, math.inf if b.high is None else b.high
    lo, hi = max(lo_a, lo_b), min(hi_a, hi_b)
    if lo < hi:
        return True
    if lo > hi or math.isinf(lo):
        return False
    # they touch at one edge: overlap only if both include it
    in_a = (a.includes_low if lo == lo_a else True) and (a.includes_high if hi == hi_a else True)
    in_b = (b.includes_low if lo == lo_b else True) and (b.includes_high if hi == hi_b else True)
    return in_a and in_b


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


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


def _natural(value: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", value))


# -- the audit ----------------------------------------------------------------------------------------------
def flag_level(ratio: float | None, tolerance: float = 0.25) -> str | None:
    """``"ok"``, ``"flag"`` or ``"critical"`` for a ratio to the reference (None for None or NaN).

    Seismometer's bands for the limit ``L = tolerance``: ``ok`` when ``1 / (1 + L) <= ratio <= 1 + L``;
    ``critical`` when ``ratio > 1 + 2L`` or ``ratio < 1 / (1 + 2L)``; ``flag`` between.
    """
    if ratio is None or not math.isfinite(ratio):
        return None
    limit = float(tolerance)
    if 1 / (1 + limit) <= ratio <= 1 + limit:
        return "ok"
    if ratio > 1 + 2 * limit or ratio < 1 / (1 + 2 * limit):
        return "critical"
    return "flag"


def cohort_analysis(
    table: pd.DataFrame,
    specs: Sequence[CohortSpec] | str,
    score: Callable[[np.ndarray], dict[str, Any]],
    *,
    min_cell: int = 10,
    reference: str | None = None,
    tolerance: float = 0.25,
    higher_is_better: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Score every cohort group and compare it with the column's reference group (a fairness audit).

    Args:
        table: one row per case: ``case_id``, ``patient_id`` and the cohort columns (see
            :func:`attach_metadata`).
        specs: the cohort columns (:func:`parse_cohorts`' result, or its text).
        score: given the integer row positions of one group, returns ``{metric: {"value": float | None,
            "ci95": [lo, hi] | None}, ...}``, optionally with ``"prevalence": float`` and
            ``"n_patients": int``. It is not called for censored groups.
        min_cell: groups with fewer patients (cases, when every case is its own patient) are censored:
            ``"censored": true``, no metrics, prevalence or
            ratios, no flags; their ``n`` (and ``n_patients``) are still shown.
        reference: a group name to compare against (e.g. ``"F"``) instead of the largest group. With several
            columns it applies where the group exists and the others fall back to their largest group.
        tolerance: the limit ``L`` of the flag bands (:func:`flag_level`), between 0 and 1.
        higher_is_better: per metric, whether a higher value is better; it only fills the ``direction`` of the
            flags (``"better"``/``"worse"`` instead of ``"higher"``/``"lower"``). Both directions are flagged.

    Returns:
        JSON-ready ``{"min_cell", "tolerance", "bands": {"ok": [lo, hi], "critical_below", "critical_above"},
        "columns": {display name: {"column", "reference", "bins", "groups": [{"name", "n", "n_patients",
        "prevalence", "censored", "metrics": {m: {"value", "ci95"}}, "ratio": {m: float | None},
        "flag": {m: "ok" | "flag" | "critical" | None}}]}}, "flags": [{"column", "group", "metric", "ratio",
        "level", "direction"}]}``. Groups come in bin order, or by descending n for categories, ``other`` and
        ``missing`` last. A ratio is the group's value over the reference's (None when either is None or not
        finite, or the reference is 0 or either is negative); the reference group has ratio 1.0, "ok".

    Raises:
        MedlensError: an unknown column or reference group, bad tolerance or min_cell.
    """
    if isinstance(specs, str):
        specs = parse_cohorts(specs)
    if not 0 < float(tolerance) < 1:
        raise MedlensError(f"tolerance must be between 0 and 1 (e.g. 0.25 for 0.8-1.25), got {tolerance}")
    if int(min_cell) < 1:
        raise MedlensError(f"min_cell must be at least 1, got {min_cell}")
    min_cell, tolerance = int(min_cell), float(tolerance)
    better = higher_is_better or {}
    table = table.reset_index(drop=True)
    patients = table["patient_id"].astype(str).to_numpy() if "patient_id" in table.columns else None
    columns: dict[str, Any] = {}
    seen_groups: dict[str, list[str]] = {}
    for spec in specs:
        labels, bins, order, column = _groups(table, spec, 3)
        codes = labels.to_numpy()
        groups = []
        for name in order:
            idx = np.flatnonzero(codes == name)
            groups.append(_score_group(name, idx, score, min_cell, patients))
        seen_groups[spec.column] = order
        ref = _reference(groups, reference, spec.column, min_cell)
        _add_ratios(groups, ref, tolerance)
        columns[spec.column] = {
            "column": column,
            "reference": ref["name"] if ref else None,
            "bins": [b.to_json() for b in bins] if bins else None,
            "groups": groups,
        }
    if reference is not None and not any(reference in g for g in seen_groups.values()):
        listing = "; ".join(f"{c}: {g}" for c, g in seen_groups.items())
        raise MedlensError(
            f"reference group {reference!r} is in no cohort column (groups: {listing}); pick one of those"
        )
    flags = [
        {
            "column": display,
            "group": g["name"],
            "metric": m,
            "ratio": g["ratio"][m],
            "level": level,
            "direction": _direction(g["ratio"][m], better.get(m)),
        }
        for display, col in columns.items()
        for g in col["groups"]
        for m, level in g["flag"].items()
        if level in ("flag", "critical")
    ]
    return {
        "min_cell": min_cell,
        "tolerance": tolerance,
        "bands": {
            "ok": [1 / (1 + tolerance), 1 + tolerance],
            "critical_below": 1 / (1 + 2 * tolerance),
            "critical_above": 1 + 2 * tolerance,
        },
        "columns": columns,
        "flags": flags,
    }


def _score_group(name, idx, score, min_cell, patients) -> dict[str, Any]:
    n = len(idx)
    group: dict[str, Any] = {
        "name": str(name),
        "n": n,
        "n_patients": len(np.unique(patients[idx])) if patients is not None else n,
        "prevalence": None,
        "censored": False,
        "metrics": {},
        "ratio": {},
        "flag": {},
    }
    group["censored"] = group["n_patients"] < min_cell
    if group["censored"]:
        return group
    result = dict(score(idx) or {})
    if result.get("n_patients") is not None:
        group["n_patients"] = int(result.pop("n_patients"))
    group["prevalence"] = _num(result.pop("prevalence", None))
    for metric, entry in result.items():
        if isinstance(entry, dict) and "value" in entry:
            ci = entry.get("ci95")
            group["metrics"][str(metric)] = {
                "value": _num(entry["value"]),
                "ci95": [_num(ci[0]), _num(ci[1])] if ci is not None else None,
            }
    return group


def _reference(groups: list[dict], wanted: str | None, display: str, min_cell: int) -> dict | None:
    names = [g["name"] for g in groups]
    if wanted is not None and wanted in names:
        ref = groups[names.index(wanted)]
        if ref["censored"]:
            raise MedlensError(
                f"reference group {wanted!r} of cohort {display!r} has {ref['n_patients']} patients, fewer "
                f"than min_cell ({min_cell}); pick another reference or lower min_cell"
            )
        return ref
    open_groups = [g for g in groups if not g["censored"]]
    real = [g for g in open_groups if g["name"] not in (MISSING, OTHER)] or open_groups
    return max(real, key=lambda g: g["n"]) if real else None  # max keeps the first of equal n


def _add_ratios(groups: list[dict], ref: dict | None, tolerance: float) -> None:
    if ref is None:
        return
    for group in groups:
        if group["censored"]:
            continue
        for metric, entry in group["metrics"].items():
            base = ref["metrics"].get(metric, {}).get("value")
            value = entry["value"]
            if group is ref:
                ratio = 1.0 if value is not None else None
            elif value is None or base is None or base <= 0 or value < 0:
                ratio = None
            else:
                ratio = float(value / base)
            group["ratio"][metric] = ratio
            group["flag"][metric] = flag_level(ratio, tolerance)


def _direction(ratio: float, higher_better: bool | None) -> str:
    higher = ratio > 1
    if higher_better is None:
        return "higher" if higher else "lower"
    return "better" if higher == bool(higher_better) else "worse"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
