"""Multi-index hashing equals brute force; pixel hashes and signatures behave as documented."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medlens.auditing.duplicates import duplicate_components
from medlens.auditing.mih import HammingIndex, brute_force_pairs
from medlens.data.hashing import (
    canonical_pixels,
    correlation,
    fingerprint,
    hamming,
    pixel_hash,
    to_gray01,
)


def planted_hashes(n: int, n_copies: int, max_flips: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    copies = base[rng.integers(0, n, size=n_copies)].copy()
    for k in range(n_copies):
        for bit in rng.choice(64, size=rng.integers(0, max_flips + 1), replace=False):
            copies[k] ^= np.uint64(1) << np.uint64(bit)
    return np.concatenate([base, copies])


@pytest.mark.parametrize("radius", [0, 3, 6, 10, 18])
def test_pairs_equal_brute_force(radius):
    h = planted_hashes(3000, 300, radius + 2, seed=radius)
    got = HammingIndex(h, radius).pairs()
    want = brute_force_pairs(h, radius)
    assert len(want[0]) > 0 or radius == 0
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_chunks", [3, 5, 11, 16])
def test_any_chunking_is_exact(n_chunks):
    h = planted_hashes(800, 200, 9, seed=n_chunks)
    got = HammingIndex(h, 8, n_chunks=n_chunks).pairs()
    want = brute_force_pairs(h, 8)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_query_equals_linear_scan():
    h = planted_hashes(2000, 500, 6, seed=7)
    index = HammingIndex(h, 6)
    for q in [*h[[0, 2100, 2499]].tolist(), 12345]:
        want = np.flatnonzero(np.bitwise_count(h ^ np.uint64(q)) <= 6)
        np.testing.assert_array_equal(index.query(q), want)
    qi, ti, _d = index.query_many(h[:50], radius=4)
    bq, bt, _bd = brute_force_pairs(h, 4, queries=h[:50])
    np.testing.assert_array_equal(qi, bq)
    np.testing.assert_array_equal(ti, bt)
    with pytest.raises(ValueError, match="radius must be between 0 and 64, got 65"):
        HammingIndex(h, 65)
    with pytest.raises(ValueError, match="n_chunks must be between 2 and 16, got 1"):
        HammingIndex(h, 4, n_chunks=1)


def test_groups_stay_within_threshold():
    # a chain 0 -(4)- 1 -(4)- 2: plain connected components would merge all three though 0-2 differ by 8
    h = np.array([0, 0b1111, 0b11111111], dtype=np.uint64)
    assert duplicate_components(h, 4) == [[0, 1]]
    assert duplicate_components(h, 8) == [[0, 1, 2]]


def test_pixel_hash_is_canonical():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=-1)
    assert pixel_hash(gray) == pixel_hash(rgb) == pixel_hash(rgba) == pixel_hash(gray[..., None])
    assert canonical_pixels(rgb).shape == (20, 30)
    colour = rgb.copy()
    colour[0, 0, 1] ^= 1
    assert pixel_hash(colour) != pixel_hash(rgb)
    assert pixel_hash(gray.astype(np.uint16)) != pixel_hash(gray)  # different data, different hash
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG", compress_level=9)  # a re-encode with other settings
    assert pixel_hash(np.asarray(Image.open(buf))) == pixel_hash(gray)


def test_gray_scaling_and_signatures():
    assert to_gray01(np.array([[0, 65535]], np.uint16)).tolist() == [[0.0, 1.0]]
    assert to_gray01(np.array([[-100.0, 300.0]], np.float32)).tolist() == [[0.0, 1.0]]
    flat = fingerprint(np.zeros((16, 16), np.float32))
    assert not flat[1].any() and correlation(flat[1], flat[1]) == 1.0
    img = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    h1, s1 = fingerprint(img)
    h2, s2 = fingerprint(1.0 - img)
    assert correlation(s1, s1) == pytest.approx(1.0, abs=1e-3)
    assert correlation(s1, s2) == pytest.approx(-1.0, abs=1e-3) and hamming(h1, h2) > 40
