"""Decode every image once, resize it, and keep the result in memory as uint8.

Training epochs, evaluation and learning curves read from this cache and never re-decode. Unreadable images
are collected (path + reason) and skipped, never fatal.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from medlens.data.manifest import Manifest
from medlens.errors import UnreadableImageError
from medlens.io.images import read_image

_MEMORY: OrderedDict[str, CachedImages] = OrderedDict()
_MEMORY_MAX = 4


@dataclass
class CachedImages:
    """Decoded images of a manifest.

    Attributes:
        images: uint8 array (N, C, S, S) of the readable cases, in manifest order.
        kept: row positions (into the manifest) of the readable cases.
        skipped: one {"path", "reason", "case_id"} per unreadable case.
    """

    images: np.ndarray
    kept: np.ndarray
    skipped: list[dict] = field(default_factory=list)


def to_uint8(arr: np.ndarray, channels: int) -> np.ndarray:
    """Any decoded image (H, W) / (H, W, 3|4), any dtype → uint8 (H, W, channels).

    8-bit images keep their values; other depths (16-bit, float DICOM) are scaled per image between the 0.5th and
    99.5th intensity percentiles, which is robust to a few hot pixels. RGB → grayscale uses ITU-R 601 luma;
    grayscale → 3 channels repeats the plane. Alpha is dropped.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] == 2:  # gray + alpha
        a = a[..., 0]
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = np.percentile(a, (0.5, 99.5))
        if hi <= lo:
            hi = lo + 1.0
        a = (np.clip((a - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    if channels == 1 and a.ndim == 3:
        a = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114 + 0.5).astype(np.uint8)
    if channels == 1:
        return a[..., None]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    return a


def load_image(path: str, size: int, channels: int) -> np.ndarray:
    """Decode, convert and resize one image → uint8 (channels, size, size)."""
    from PIL import Image

    a = to_uint8(read_image(path), channels)
    im = Image.fromarray(a[..., 0] if channels == 1 else a)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    out = np.asarray(im)
    return out[None] if channels == 1 else np.ascontiguousarray(out.transpose(2, 0, 1))


def _key(paths: list[str], size: int, channels: int) -> str:
    import os

    h = hashlib.sha1(f"{size}|{channels}".encode())
    for p in paths:
        try:
            st = os.stat(p.split("::")[0])
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{p}|missing".encode())
    return h.hexdigest()


def cache_images(manifest: Manifest, size: int, channels: int, *, workers: int = 2,
                 progress: bool = True, description: str = "Decoding images") -> CachedImages:
    """Decode and resize every image of ``manifest`` once (memoised in memory by file identity)."""
    paths = manifest.paths()
    key = _key(paths, size, channels)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]

    def one(i: int):
        try:
            return i, load_image(paths[i], size, channels), None
        except UnreadableImageError as err:
            return i, None, err.reason
        except (OSError, ValueError) as err:  # anything else a broken file can raise while converting
            return i, None, str(err) or type(err).__name__

    images = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    skipped = []
    from medlens.utils.progress import track

    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL and zlib release the GIL while decoding
        for i, arr, reason in track(pool.map(one, range(len(paths))), total=len(paths),
                                    description=description, disable=not progress):
            if arr is None:
                skipped.append({"path": paths[i], "reason": reason,
                                "case_id": str(manifest.df["case_id"].iloc[i])})
            else:
                images[i], ok[i] = arr, True
    kept = np.flatnonzero(ok)
    result = CachedImages(images=images[kept] if len(kept) < len(paths) else images, kept=kept, skipped=skipped)
    _MEMORY[key] = result
    while len(_MEMORY) > _MEMORY_MAX:
        _MEMORY.popitem(last=False)
    return result
