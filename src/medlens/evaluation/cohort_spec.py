"""Cohort specs: the cohort syntax (``gender,age:<40,40-60,>60``), numeric bins and their parsing."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from medlens.errors import MedlensError

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


def _fmt(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
