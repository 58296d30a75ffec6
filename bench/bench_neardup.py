"""Near-duplicate search benchmark (issue 3). Not a test: run by hand, paste into docs/benchmarks.md.

    .venv/bin/python bench/bench_neardup.py [--n 100000] [--radius 6]

100 000 synthetic 64-bit hashes: random ones plus planted near copies (1..radius flipped bits). Times the
multi-index hash (build, all-pairs self-join, and a batch of queries) against a vectorised brute force on
the same query batch, extrapolates brute force to all pairs, and checks that every planted pair is found.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from medlens.auditing.mih import HammingIndex, brute_force_pairs


def planted(n: int, n_copies: int, radius: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=n - n_copies, dtype=np.uint64)
    src = rng.choice(len(base), size=n_copies, replace=False)
    copies = base[src].copy()
    for k in range(n_copies):
        for bit in rng.choice(64, size=rng.integers(1, radius + 1), replace=False):
            copies[k] ^= np.uint64(1) << np.uint64(bit)
    hashes = np.concatenate([base, copies])
    pairs = set(zip(src.tolist(), range(len(base), n)))
    return hashes, pairs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--copies", type=int, default=10_000)
    ap.add_argument("--radius", type=int, default=6)
    ap.add_argument("--queries", type=int, default=2_000)
    args = ap.parse_args()
    hashes, truth = planted(args.n, args.copies, args.radius)
    t = time.perf_counter()
    index = HammingIndex(hashes, args.radius)
    build = time.perf_counter() - t
    t = time.perf_counter()
    i, j, _ = index.pairs()
    join = time.perf_counter() - t
    found = set(zip(i.tolist(), j.tolist()))
    recall = len(truth & found) / len(truth)
    q = hashes[-args.queries :]
    t = time.perf_counter()
    mq = index.query_many(q)
    mih_q = time.perf_counter() - t
    t = time.perf_counter()
    bq = brute_force_pairs(hashes, args.radius, queries=q)
    brute_q = time.perf_counter() - t
    same = all(np.array_equal(a, b) for a, b in zip(mq, bq))
    brute_all = brute_q * len(hashes) / len(q) / 2  # half the matrix for all pairs
    print(
        f"{len(hashes)} hashes ({args.copies} planted near copies, 1-{args.radius} bits), "
        f"radius {args.radius}, {index.n_chunks} chunks\n"
    )
    print("| step | multi-index hashing | brute force |")
    print("|---|---|---|")
    print(f"| build index | {build:.2f} s | - |")
    print(f"| {len(q)} queries | {mih_q:.3f} s | {brute_q:.2f} s |")
    print(f"| all pairs (self-join) | {join:.2f} s | ~{brute_all:.0f} s (extrapolated) |")
    print(f"| pairs found | {len(found)} | same as brute force on the query batch: {same} |")
    print(f"| recall of planted pairs | {recall:.3f} | 1.000 |")
    if recall < 1.0 or not same:
        raise SystemExit("multi-index hashing missed pairs")


if __name__ == "__main__":
    main()
