"""A reading-day simulation: how much sooner are urgent studies read with the worklist than first in,
first out?

Studies arrive in their given order, one every ``arrive_every_minutes`` (all at the start when 0). One reader
reads one study every ``read_every_minutes``: when free, they take the highest-priority study that has
arrived (medlens; ties to the earlier arrival) or the earliest arrived one (FIFO). A study's wait is the time
from its arrival to the end of its read. Intervals come from a percentile bootstrap over the urgent studies
(the same resample for both orders, so the difference is paired), computed for all resamples at once.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medlens.errors import MedlensError

_CHUNK = 4_000_000  # resample indices per chunk (resamples × urgent studies), ~32 MB of int64


def simulate_day(
    items: Sequence[Mapping[str, Any]],
    *,
    read_every_minutes: float = 5.0,
    arrive_every_minutes: float = 0.0,
    urgent: Callable[[Mapping[str, Any]], bool] | Sequence[bool] | np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, Any]:
    """Simulate one reader working through the studies under both orders.

    Args:
        items: worklist rows or study records in arrival order (rows of :func:`build_worklist` come sorted
            by rank: pass ``sorted(rows, key=lambda r: r["input_index"])``). Each needs a numeric priority:
            ``sort_key`` (rows), else ``priority``; "read first, unreadable" counts as +inf.
        read_every_minutes: minutes one read takes.
        arrive_every_minutes: minutes between arrivals (0: all studies are there at the start).
        urgent: ``urgent(item) -> bool`` (the truth), or one bool per item.
        n_bootstrap: resamples of the urgent studies for the intervals (0: no intervals).
        seed: seed of the resampling.
        ci: coverage of the intervals (stored as ``ci95``).

    Returns:
        JSON-ready ``{"n", "n_urgent", "read_every_minutes", "arrive_every_minutes", "medlens": {"mean":
        {"value", "ci95"}, "median": {...}}, "fifo": {...}, "difference": {...} (FIFO minus medlens: minutes
        saved for urgent studies), "auc" (priority of urgent vs non-urgent studies; None when either group
        is empty), "bootstrap": {...}}``; waits in minutes, None when there is no urgent study.

    Raises:
        MedlensError: bad timing values, a missing or non-numeric priority, or an ``urgent`` of the wrong
            length.
    """
    read_every = _positive(read_every_minutes, "read_every_minutes", allow_zero=False)
    arrive_every = _positive(arrive_every_minutes, "arrive_every_minutes", allow_zero=True)
    if not 0 < ci < 1:
        raise MedlensError(f"ci must be between 0 and 1 (e.g. 0.95), got {ci}")
    n = len(items)
    priority = np.array([_priority(item, i) for i, item in enumerate(items)], dtype=np.float64)
    truth = _truth(items, urgent)
    arrival = np.arange(n, dtype=np.float64) * arrive_every
    waits = {
        "medlens": _waits(arrival, priority, read_every),
        "fifo": _waits(arrival, np.zeros(n), read_every),
    }
    sel = np.flatnonzero(truth)
    result: dict[str, Any] = {
        "n": int(n),
        "n_urgent": int(sel.size),
        "read_every_minutes": read_every,
        "arrive_every_minutes": arrive_every,
    }
    samples = _bootstrap_index(sel.size, n_bootstrap, seed)
    result.update(_summaries(waits["medlens"][sel], waits["fifo"][sel], samples, ci))
    result["auc"] = _auc(truth, priority)
    result["bootstrap"] = {
        "n_resamples": int(n_bootstrap) if samples is not None else 0,
        "seed": int(seed),
        "ci": float(ci),
        "method": "percentile, urgent studies resampled with replacement (paired across orders)",
    }
    return result


def _waits(arrival: np.ndarray, priority: np.ndarray, read_every: float) -> np.ndarray:
    """Minutes from arrival to the end of the read, the reader always taking the highest priority arrived
    (ties to the earlier arrival); all-equal priorities give first in, first out."""
    n = arrival.size
    waits = np.zeros(n)
    heap: list[tuple[float, int]] = []
    t, nxt, done = 0.0, 0, 0
    while done < n:
        while nxt < n and arrival[nxt] <= t:
            heapq.heappush(heap, (-priority[nxt], nxt))
            nxt += 1
        if not heap:  # the reader waits for the next study
            t = float(arrival[nxt])
            continue
        _, i = heapq.heappop(heap)
        t += read_every
        waits[i] = t - arrival[i]
        done += 1
    return waits


def _bootstrap_index(k: int, n_bootstrap: int, seed: int) -> np.ndarray | None:
    if int(n_bootstrap) <= 0 or k < 2:
        return None
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // k)
    parts = [
        rng.integers(0, k, size=(min(rows, int(n_bootstrap) - s), k))
        for s in range(0, int(n_bootstrap), rows)
    ]
    return np.concatenate(parts)


def _summaries(
    medlens: np.ndarray, fifo: np.ndarray, samples: np.ndarray | None, ci: float
) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean and median wait of the urgent studies under each order, and FIFO minus medlens, with intervals
    from the same resamples (paired)."""
    out: dict[str, dict[str, dict[str, Any]]] = {"medlens": {}, "fifo": {}, "difference": {}}
    for stat, fn in (("mean", np.mean), ("median", np.median)):
        if medlens.size == 0:
            for key in out:
                out[key][stat] = {"value": None, "ci95": None}
            continue
        point = {"medlens": float(fn(medlens)), "fifo": float(fn(fifo))}
        point["difference"] = point["fifo"] - point["medlens"]
        draws = None
        if samples is not None:
            draws = {"medlens": fn(medlens[samples], axis=1), "fifo": fn(fifo[samples], axis=1)}
            draws["difference"] = draws["fifo"] - draws["medlens"]
        for key in out:
            interval = None
            if draws is not None:
                lo, hi = np.percentile(draws[key], [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
                interval = [float(lo), float(hi)]
            out[key][stat] = {"value": point[key], "ci95": interval}
    return out


def _auc(truth: np.ndarray, priority: np.ndarray) -> float | None:
    if truth.all() or not truth.any():
        return None
    from sklearn.metrics import roc_auc_score  # deferred: ~0.5 s, only the simulation needs it

    finite = priority[np.isfinite(priority)]
    top = (finite.max() if finite.size else 0.0) + 1.0
    return float(roc_auc_score(truth.astype(int), np.where(np.isinf(priority), top, priority)))


def _priority(item: Mapping[str, Any], i: int) -> float:
    value = item.get("sort_key", item.get("priority")) if isinstance(item, Mapping) else None
    if value is None and isinstance(item, Mapping) and item.get("unreadable"):
        return math.inf  # a worklist row read back from JSON (+inf is stored as null)
    if isinstance(value, str) and value.startswith("read first"):
        return math.inf
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number):
        raise MedlensError(
            f"study {i} ({(item or {}).get('study', '?')!r}) has no numeric priority (got {value!r}); "
            "simulate worklist rows, or records with a 'priority'"
        )
    return number


def _truth(items: Sequence[Mapping[str, Any]], urgent: Any) -> np.ndarray:
    if callable(urgent):
        return np.array([bool(urgent(item)) for item in items], dtype=bool)
    truth = np.asarray(urgent, dtype=bool).reshape(-1)
    if truth.size != len(items):
        raise MedlensError(f"urgent has {truth.size} values for {len(items)} studies; give one per study")
    return truth


def _positive(value: Any, name: str, allow_zero: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        word = "0 or more" if allow_zero else "above 0"
        raise MedlensError(f"{name} must be a number of minutes {word}, got {value!r}")
    return v
