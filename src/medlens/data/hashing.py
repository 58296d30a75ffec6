"""Image fingerprints: an exact hash of decoded pixels and a 64-bit DCT perceptual hash (pHash).

The exact hash is taken over a canonical form of the pixels, so that a lossless re-encode (PNG → PNG, JPEG
pixels saved as PNG) matches, and an RGB image whose three channels are equal matches its grayscale
original. The perceptual hash is the classic DCT pHash (Zauner 2010, as in the ``imagehash`` package):
grayscale → 32 × 32 → 2-D DCT-II → the 8 × 8 lowest frequencies → one bit per coefficient above
their median. It is computed here with ``scipy.fft`` rather than adding a dependency.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

# ITU-R BT.601 luma weights, the same Pillow uses for mode "L".
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
PHASH_BITS = 64


def canonical_pixels(arr: np.ndarray) -> np.ndarray:
    """Return the pixels in a canonical grayscale-or-RGB(A) form for exact hashing.

    Drops a fully opaque alpha channel and collapses R = G = B images to one channel.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 4 and _alpha_is_opaque(a[..., 3]):
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 3 and _channels_equal(a):
        a = a[..., 0]
    return np.ascontiguousarray(a)


def _alpha_is_opaque(alpha: np.ndarray) -> bool:
    top = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
    return bool((alpha == top).all())


def _channels_equal(a: np.ndarray) -> bool:
    return bool(np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2]))


def pixel_hash(arr: np.ndarray) -> str:
    """Hex digest (128-bit BLAKE2b) of the canonical pixels, their dtype and shape."""
    a = canonical_pixels(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}|{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def to_gray01(arr: np.ndarray) -> np.ndarray:
    """Grayscale float32 image scaled to [0, 1].

    Integer images are divided by their dtype's maximum (so a dark 16-bit image stays dark); float images
    already in [0, 1] are kept, other float images (e.g. DICOM after rescale) are min-max scaled.
    """
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[..., :3]
        a = a.astype(np.float32) @ _LUMA[: a.shape[-1]] if a.shape[-1] == 3 else a[..., 0].astype(np.float32)
        scale = _dtype_max(arr.dtype)
    else:
        scale = _dtype_max(a.dtype)
        a = a.astype(np.float32)
    if scale is not None:
        return a / np.float32(scale)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo >= 0.0 and hi <= 1.0:
        return a
    return (a - lo) / np.float32(hi - lo) if hi > lo else np.zeros_like(a)


def _dtype_max(dtype: np.dtype) -> float | None:
    if np.issubdtype(dtype, np.bool_):
        return 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return None


def phash(gray: np.ndarray) -> int:
    """64-bit DCT perceptual hash of a 2-D grayscale image (as an unsigned int)."""
    return fingerprint(gray)[0]


def fingerprint(gray: np.ndarray) -> tuple[int, np.ndarray]:
    """The pHash and a structure signature (1024 values, zero-mean, unit-norm, float16) of a grayscale image.

    The signature is the 32 × 32 downsized image minus its Gaussian blur (σ = 2 px): the fine structure
    inside the image, without the overall outline that every head-on-black MRI slice shares. The dot
    product of two signatures is their correlation: 1.0 for re-encodes and resizes, > 0.7 for most 2-4 %
    crops, while different slices that share a pHash by chance mostly stay below 0.7 (see
    tests/test_audit_threshold.py). A flat image has an all-zero signature.
    """
    # deferred: SciPy is heavy (~0.2 s) and importing medlens.auditing.run must stay light
    import scipy.fft
    from scipy.ndimage import gaussian_filter

    small = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32))
    small = np.asarray(small.resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
    coeffs = scipy.fft.dctn(small, type=2, norm="ortho")[:8, :8].ravel()
    bits = coeffs > np.median(coeffs)
    sig = (small - gaussian_filter(small, sigma=2)).ravel()
    sig -= sig.mean()
    norm = np.linalg.norm(sig)
    sig = sig / norm if norm > 1e-9 else np.zeros_like(sig)
    return int(np.packbits(bits).view(">u8")[0]), sig.astype(np.float16)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation of two signatures; two flat images count as identical (1.0)."""
    a32, b32 = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if not a32.any() and not b32.any():
        return 1.0
    return float(a32 @ b32)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return int(a ^ b).bit_count()


def phash_hex(value: int) -> str:
    return f"{int(value):016x}"


def nearest_distance(queries: np.ndarray, reference: np.ndarray, block: int = 512) -> np.ndarray:
    """For each query pHash, the smallest Hamming distance to any reference pHash (65 with no reference).

    Brute force in blocks (``N × M`` XOR + popcount): a few million pairs take well under a second; the
    audit's multi-index hashing (:mod:`medlens.auditing.mih`) is for all pairs within one large collection.
    """
    q = np.asarray(queries, dtype=np.uint64).reshape(-1)
    r = np.asarray(reference, dtype=np.uint64).reshape(-1)
    out = np.full(len(q), PHASH_BITS + 1, dtype=np.int64)
    if len(r) == 0:
        return out
    for start in range(0, len(q), block):
        d = np.bitwise_count(q[start : start + block, None] ^ r[None, :])
        out[start : start + block] = d.min(axis=1)
    return out
