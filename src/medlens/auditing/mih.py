"""Multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012) for Hamming-radius search on 64-bit hashes.

Split every hash into ``m`` disjoint bit-chunks. If two hashes differ in at most ``r`` bits, then by the
pigeonhole principle at least one chunk differs in at most ``r // m`` bits. So, per chunk, we look up every
chunk value within ``r // m`` bit-flips of the query's chunk in a sorted table, and verify the candidates
with a full popcount. The search is exact (same answer as brute force) and, for well-spread hashes, touches
a tiny fraction of the data instead of all ``n²`` pairs. Everything is vectorised with numpy.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

BITS = 64
_MAX_BATCH = 2_000_000  # candidate lookups per numpy batch (bounds memory)


class HammingIndex:
    """Exact Hamming-radius search over 64-bit hashes with multi-index hashing.

    Args:
        hashes: 1-D array of hashes (anything convertible to uint64).
        radius: the largest radius you will query; it picks the number of chunks.
        n_chunks: override the number of chunks (2..16); by default a cost model picks it.

    Raises:
        ValueError: radius outside 0..64, n_chunks outside 2..16, or a radius so large for the chunking
            that the search would probe more than a million chunk values per query.
    """

    def __init__(self, hashes, radius: int, n_chunks: int | None = None):
        self.hashes = np.ascontiguousarray(np.asarray(hashes, dtype=np.uint64).ravel())
        if radius < 0 or radius > BITS:
            raise ValueError(f"radius must be between 0 and {BITS}, got {radius}")
        self.radius = int(radius)
        self.n_chunks = int(n_chunks) if n_chunks else _choose_chunks(len(self.hashes), self.radius)
        if not 2 <= self.n_chunks <= 16:
            raise ValueError(f"n_chunks must be between 2 and 16, got {n_chunks}")
        widths = [BITS // self.n_chunks + (i < BITS % self.n_chunks) for i in range(self.n_chunks)]
        self.shifts = np.cumsum([0, *widths[:-1]]).tolist()
        self.widths = widths
        self._tables = []
        for shift, width in zip(self.shifts, self.widths):
            vals = _chunk(self.hashes, shift, width)
            order = np.argsort(vals, kind="stable")
            self._tables.append((vals[order], order))

    def __len__(self) -> int:
        return len(self.hashes)

    def query(self, value: int, radius: int | None = None) -> np.ndarray:
        """Indices (ascending) of stored hashes within ``radius`` bits of ``value``."""
        _, ti, _ = self.query_many(np.array([value], dtype=np.uint64), radius)
        return np.sort(ti)

    def query_many(self, queries, radius: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query index, stored index, distance) triples within ``radius``, each pair once."""
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.uint64).ravel())
        return self._search(q, self.radius if radius is None else int(radius), self_join=False)

    def pairs(self, radius: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All pairs ``i < j`` of stored hashes within ``radius`` bits, with their distances."""
        return self._search(self.hashes, self.radius if radius is None else int(radius), self_join=True)

    def _search(self, q: np.ndarray, radius: int, self_join: bool):
        found_i, found_j = [], []
        sub = radius // self.n_chunks
        probes = sum(math.comb(self.widths[0], k) for k in range(min(sub, self.widths[0]) + 1))
        if probes > 1_000_000:
            raise ValueError(
                f"radius {radius} needs {probes} probes per chunk with {self.n_chunks} chunks; "
                f"build the index with radius={radius} (or more chunks)"
            )
        for (vals, order), shift, width in zip(self._tables, self.shifts, self.widths):
            qchunk = _chunk(q, shift, width)
            masks = _masks(width, sub)
            step = max(1, _MAX_BATCH // max(1, len(q)))
            for start in range(0, len(masks), step):
                qi, ti = _lookup(qchunk, masks[start : start + step], vals, order)
                keep = np.bitwise_count(q[qi] ^ self.hashes[ti]) <= radius
                if self_join:
                    keep &= qi < ti
                found_i.append(qi[keep])
                found_j.append(ti[keep])
        if not found_i:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        key = np.unique(np.concatenate(found_i) * len(self.hashes) + np.concatenate(found_j))
        qi, ti = key // len(self.hashes), key % len(self.hashes)
        return qi, ti, np.bitwise_count(q[qi] ^ self.hashes[ti]).astype(np.int64)


def brute_force_pairs(hashes, radius: int, queries=None, block: int = 256):
    """Reference answer by comparing every pair (O(n²)); same output format as the index."""
    h = np.asarray(hashes, dtype=np.uint64)
    q = h if queries is None else np.asarray(queries, dtype=np.uint64)
    out_i, out_j = [], []
    for start in range(0, len(q), block):
        d = np.bitwise_count(q[start : start + block, None] ^ h[None, :])
        qi, ti = np.nonzero(d <= radius)
        qi = qi + start
        if queries is None:
            qi, ti = qi[qi < ti], ti[qi < ti]
        out_i.append(qi)
        out_j.append(ti)
    qi, ti = np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)
    return qi, ti, np.bitwise_count(q[qi] ^ h[ti]).astype(np.int64)


def _chunk(h: np.ndarray, shift: int, width: int) -> np.ndarray:
    return ((h >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)


@functools.lru_cache(maxsize=64)
def _masks(width: int, max_bits: int) -> np.ndarray:
    """Every ``width``-bit value with at most ``max_bits`` bits set (the flips to probe)."""
    masks = [0]
    for k in range(1, min(max_bits, width) + 1):
        masks += [sum(1 << b for b in combo) for combo in itertools.combinations(range(width), k)]
    return np.array(masks, dtype=np.int64)


def _lookup(qchunk: np.ndarray, masks: np.ndarray, vals: np.ndarray, order: np.ndarray):
    """Expand every (query, mask) probe into the stored indices whose chunk equals ``qchunk ^ mask``."""
    keys = (qchunk[:, None] ^ masks[None, :]).ravel()
    lo = np.searchsorted(vals, keys, side="left")
    hi = np.searchsorted(vals, keys, side="right")
    counts = hi - lo
    hit = np.flatnonzero(counts)
    counts = counts[hit]
    total = int(counts.sum())
    qi = np.repeat(hit // len(masks), counts)
    # position inside each run: a global arange minus the run's start offset
    starts = np.repeat(lo[hit] - (np.cumsum(counts) - counts), counts)
    ti = order[starts + np.arange(total)]
    return qi, ti


def _choose_chunks(n: int, radius: int) -> int:
    """Number of chunks minimising probes + expected candidates (uniform hashes assumed)."""
    best, best_cost = 4, math.inf
    for m in range(2, 17):
        width = BITS // m
        probes = sum(math.comb(width, k) for k in range(min(radius // m, width) + 1))
        cost = m * probes * (math.log2(max(n, 2)) + n / 2.0**width)
        if cost < best_cost:
            best, best_cost = m, cost
    return best
