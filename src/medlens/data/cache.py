"""Decode every image once, resize it, and keep the result in memory as uint8.

Training epochs, evaluation and learning curves read from this cache and never re-decode. Unreadable images
are collected (path + reason) and skipped, never fatal.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from medlens.data.manifest import Manifest
from medlens.data.seg_sources import check_pair
from medlens.errors import UnreadableImageError
from medlens.io.guard import first_line
from medlens.io.images import decode_image, read_image
from medlens.utils.progress import track

_MEMORY: OrderedDict[str, CachedImages] = OrderedDict()
_MEMORY_MAX = 4


@dataclass
class CachedImages:
    """Decoded images of a manifest.

    Attributes:
        images: uint8 array (N, C, S, S) of the readable cases, in manifest order.
        kept: row positions (into the manifest) of the readable cases.
        skipped: one {"path", "reason", "kind", "case_id"} per unreadable case.
        notes: one {"path", "case_id", "note"} per decision the reader made (first page of a multi-page TIFF).
    """

    images: np.ndarray
    kept: np.ndarray
    skipped: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)


def to_uint8(arr: np.ndarray, channels: int) -> np.ndarray:
    """Any decoded image (H, W) / (H, W, 1|2|3|4), any dtype → uint8 (H, W, channels).

    8-bit images keep their values; other depths (16-bit, float DICOM) are scaled per image between the 0.5th
    and 99.5th intensity percentiles, which is robust to a few hot pixels. RGB → grayscale uses ITU-R 601
    luma; grayscale → 3 channels repeats the plane. Alpha is dropped.
    """
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim == 3 and a.shape[-1] in (1, 2):  # gray (+ alpha)
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
    return resize_image(read_image(path), size, channels)


def resize_image(array: np.ndarray, size: int, channels: int) -> np.ndarray:
    """A decoded image (H, W[, C]) → uint8 (channels, size, size), resized bilinearly."""

    a = to_uint8(array, channels)
    im = Image.fromarray(a[..., 0] if channels == 1 else a)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    out = np.asarray(im)
    return out[None] if channels == 1 else np.ascontiguousarray(out.transpose(2, 0, 1))


def _key(paths: list[str], size: int, channels: int, extra: str = "") -> str:
    h = hashlib.sha1(f"{size}|{channels}|{extra}".encode())
    for p in paths:
        try:
            st = os.stat(p.split("::")[0])
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{p}|missing".encode())
    return h.hexdigest()


def cache_images(
    manifest: Manifest,
    size: int,
    channels: int,
    *,
    workers: int = 2,
    progress: bool = True,
    description: str = "Decoding images",
) -> CachedImages:
    """Decode and resize every image of ``manifest`` once (memoised in memory by file identity)."""
    paths = manifest.paths()
    key = _key(paths, size, channels)
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]

    def one(i: int):
        try:
            decoded = decode_image(paths[i])
            return i, resize_image(decoded.array, size, channels), decoded.notes
        except UnreadableImageError as err:
            return i, None, err
        except (
            OSError,
            ValueError,
            MemoryError,
        ) as err:  # anything else a broken file raises while converting
            return i, None, UnreadableImageError(paths[i], first_line(err))

    images = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    skipped: list[dict] = []
    notes: list[dict] = []

    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL and zlib release the GIL while decoding
        for i, arr, info in track(
            pool.map(one, range(len(paths))), total=len(paths), description=description, disable=not progress
        ):
            case_id = str(manifest.df["case_id"].iloc[i])
            if arr is None:
                skipped.append(info.record(case_id=case_id))
            else:
                images[i], ok[i] = arr, True
                notes.extend({"path": paths[i], "case_id": case_id, "note": n} for n in info)
    kept = np.flatnonzero(ok)
    result = CachedImages(
        images=images[kept] if len(kept) < len(paths) else images, kept=kept, skipped=skipped, notes=notes
    )
    _MEMORY[key] = result
    while len(_MEMORY) > _MEMORY_MAX:
        _MEMORY.popitem(last=False)
    return result


@dataclass
class CachedPairs:
    """Decoded image/mask pairs of a segmentation (or detection) manifest.

    Attributes:
        images: uint8 (N, C, S, S) of the readable cases, in manifest order.
        masks: uint8 label maps (N, S, S) resized with nearest neighbour, or None when masks were not read.
        shapes: (N, 2) original (height, width) of each kept image.
        kept: row positions (into the manifest) of the readable cases.
        skipped: one {"path", "reason", "case_id"} per unreadable image.
    """

    images: np.ndarray
    masks: np.ndarray | None
    shapes: np.ndarray
    kept: np.ndarray
    skipped: list[dict] = field(default_factory=list)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A label map (H, W) → uint8 (size, size) with nearest-neighbour resizing (labels stay labels)."""

    if mask.shape == (size, size):
        return np.ascontiguousarray(mask, dtype=np.uint8)
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST))


def load_pair(
    image_path: str, mask_path: str | None, size: int, channels: int, case_id: str, num_classes: int = 2
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Decode, check and resize one image and its mask.

    Returns:
        ``(image (C, S, S), mask (S, S) or None, (height, width) of the original image)``.

    Raises:
        UnreadableImageError: the image or its mask cannot be decoded (the case is skipped by the caller).
        MedlensError: the mask does not fit the image or holds values other than the labels, naming the
            case.
    """

    image = read_image(image_path)
    shape = (int(image.shape[0]), int(image.shape[1]))
    if mask_path is None:
        return resize_image(image, size, channels), None, shape
    try:
        raw = read_image(mask_path)
    except UnreadableImageError as err:  # a broken mask file: the case is reported and skipped like its image
        raise UnreadableImageError(mask_path, f"mask of case {case_id}: {err.reason}", kind=err.kind) from err
    mask = check_pair(image, raw, case_id, num_classes=num_classes)
    return resize_image(image, size, channels), resize_mask(mask, size), shape


def cache_pairs(
    manifest: Manifest,
    size: int,
    channels: int,
    *,
    masks: bool = True,
    num_classes: int = 2,
    workers: int = 2,
    progress: bool = True,
) -> CachedPairs:
    """Decode every image (and its ``mask``) of ``manifest`` once; memoised like :func:`cache_images`.

    Unreadable images and unreadable (truncated, undecodable) masks are skipped and reported with their
    reason; a mask that does not fit its image or holds other values is an error naming the case.
    """
    paths = manifest.paths()
    mask_paths = [manifest.resolve(p) for p in manifest.df["mask"]] if masks else [None] * len(paths)
    key = _key(paths + [p for p in mask_paths if p], size, channels, f"pairs|{masks}|{num_classes}")
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    case_ids = manifest.df["case_id"].astype(str).tolist()

    def one(i: int):
        try:
            return i, load_pair(paths[i], mask_paths[i], size, channels, case_ids[i], num_classes), None
        except UnreadableImageError as err:
            return i, None, err

    images = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    labels = np.zeros((len(paths), size, size), dtype=np.uint8) if masks else None
    shapes = np.zeros((len(paths), 2), dtype=np.int64)
    ok = np.zeros(len(paths), dtype=bool)
    skipped = []

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, loaded, err in track(
            pool.map(one, range(len(paths))),
            total=len(paths),
            description="Decoding image/mask pairs",
            disable=not progress,
        ):
            if loaded is None:
                skipped.append(err.record(case_id=case_ids[i]))
                continue
            images[i], shapes[i], ok[i] = loaded[0], loaded[2], True
            if labels is not None:
                labels[i] = loaded[1]
    kept = np.flatnonzero(ok)
    full = len(kept) == len(paths)
    result = CachedPairs(
        images if full else images[kept],
        None if labels is None else (labels if full else labels[kept]),
        shapes[kept],
        kept,
        skipped,
    )
    _MEMORY[key] = result
    while len(_MEMORY) > _MEMORY_MAX:
        _MEMORY.popitem(last=False)
    return result
