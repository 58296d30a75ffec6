"""The reading-day simulation: a perfect ranking beats first in, first out; equal priorities are FIFO."""

from __future__ import annotations

import numpy as np
import pytest

from medlens.errors import MedlensError
from medlens.triaging.simulate import simulate_day


def test_perfect_ranking_reads_urgent_studies_sooner_with_auc_one():
    truth = np.zeros(40, dtype=bool)
    truth[[5, 13, 22, 31, 39]] = True  # urgent studies arrive late in the queue
    items = [{"study": f"s{i}", "priority": float(t)} for i, t in enumerate(truth)]
    out = simulate_day(items, read_every_minutes=5.0, urgent=truth, n_bootstrap=200, seed=1)
    assert out["n"] == 40 and out["n_urgent"] == 5 and out["auc"] == 1.0
    # all arrive at 0: urgent studies are read 1st..5th (5..25 min, median 15);
    # FIFO reads them at positions 6, 14, 23, 32, 40 (× 5 min, median 23 × 5)
    assert out["medlens"]["median"]["value"] == 15.0
    assert out["fifo"]["median"]["value"] == 23 * 5.0
    assert out["medlens"]["median"]["value"] < out["fifo"]["median"]["value"]
    assert out["difference"]["mean"]["value"] == pytest.approx((6 + 14 + 23 + 32 + 40) - 15)
    lo, hi = out["difference"]["mean"]["ci95"]
    assert 0 < lo <= out["difference"]["mean"]["value"] <= hi


def test_equal_priorities_are_first_in_first_out_and_arrivals_are_respected():
    items = [{"study": f"s{i}", "sort_key": 0.0} for i in range(12)]
    urgent = lambda item: item["study"] in {"s3", "s7"}  # noqa: E731
    out = simulate_day(items, read_every_minutes=4.0, arrive_every_minutes=3.0, urgent=urgent, n_bootstrap=50)
    assert out["medlens"] == out["fifo"]
    assert out["difference"]["mean"]["value"] == 0.0 and out["auc"] == 0.5
    # a late urgent study cannot be read before it arrives: one study, arriving at 30 min, read 30..34
    late = [{"priority": 0.0}] * 10 + [{"priority": 1.0}]
    got = simulate_day(late, read_every_minutes=4.0, arrive_every_minutes=3.0, urgent=[False] * 10 + [True])
    assert got["medlens"]["mean"]["value"] >= 4.0


def test_unreadable_rows_count_as_highest_priority_and_bad_input_is_refused():
    items = [{"priority": 0.2}, {"priority": "read first, unreadable"}, {"priority": 0.9}]
    out = simulate_day(items, urgent=[False, True, False], n_bootstrap=0)
    assert out["medlens"]["mean"]["value"] == 5.0 and out["auc"] == 1.0
    with pytest.raises(MedlensError, match="no numeric priority"):
        simulate_day([{"study": "x"}], urgent=[True])
    with pytest.raises(MedlensError, match="urgent has 1 values for 2 studies"):
        simulate_day([{"priority": 1}, {"priority": 0}], urgent=[True])
