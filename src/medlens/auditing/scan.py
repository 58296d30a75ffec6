"""The audit's single pass over the images: decode each file once and measure everything from it."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from medlens.data.hashing import fingerprint, pixel_hash, to_gray01
from medlens.errors import UnreadableImageError
from medlens.io.guard import first_line
from medlens.io.images import NPZ_REF, decode_image, is_image_file

THUMB_SIDE = 64
MAX_STAT_PIXELS = 16 * 1024 * 1024
Item = TypeVar("Item")


def scan_image(path: str) -> dict[str, Any]:
    """Decode one image and return its census, intensity statistics, hashes and a JPEG thumbnail.

    Never raises for a bad file: the record has ``readable=False`` and a ``reason`` instead.
    """
    if not NPZ_REF.match(path) and Path(path).is_file() and not is_image_file(path):
        return _unreadable(path, f"not an image file (suffix {Path(path).suffix or 'none'!r})", "non-image")
    try:
        decoded = decode_image(path)
    except UnreadableImageError as err:
        return _unreadable(path, err.reason, err.kind)
    except (OSError, ValueError, MemoryError) as err:  # a decoder failing in a way the guard did not map
        return _unreadable(path, first_line(err), "undecodable")
    arr = decoded.array
    if arr.ndim not in (2, 3) or min(arr.shape[:2]) < 1:
        return _unreadable(path, f"not a 2-D image (array shape {arr.shape})", "undecodable")
    gray = to_gray01(_strided(arr))
    ph, signature = fingerprint(gray)
    channels = 1 if arr.ndim == 2 else int(arr.shape[-1])
    return {
        "readable": True,
        "reason": "",
        "reason_kind": "",
        "note": "; ".join(decoded.notes),
        "width": int(arr.shape[1]),
        "height": int(arr.shape[0]),
        "channels": channels,
        "dtype": str(arr.dtype),
        "bits": int(arr.dtype.itemsize * 8),
        "mode": _mode(arr),
        "gray_rgb": bool(
            channels == 3
            and np.array_equal(arr[..., 0], arr[..., 1])
            and np.array_equal(arr[..., 0], arr[..., 2])
        ),
        "mean": float(gray.mean()),
        "std": float(gray.std()),
        "pixel_hash": pixel_hash(arr),
        "phash": ph,
        "signature": signature,
        "thumb": thumbnail(arr, gray),
    }


def scan_images(
    paths: Sequence[Item],
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
    scan: Callable[[Item], dict[str, Any]] = scan_image,
) -> list[dict[str, Any]]:
    """Run :func:`scan_image` (or ``scan``) over ``paths`` with a thread pool, in input order.

    Threads (not processes): Pillow and numpy release the GIL while decoding and reducing, and threads are
    safe inside a process that already runs torch (``medlens train --audit-fix``).

    Args:
        paths: resolved image paths (or npz references).
        workers: number of threads; 1 runs in the calling thread.
        progress: called with the number of images finished since the last call.
        scan: the function measuring one item (a volume scanner, or one that also checks the mask).
    """
    out: list[dict[str, Any]] = []
    if workers <= 1 or len(paths) < 2:
        for p in paths:
            out.append(scan(p))
            if progress:
                progress(1)
        return out
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for record in pool.map(scan, paths):
            out.append(record)
            if progress:
                progress(1)
    return out


def _strided(arr: np.ndarray) -> np.ndarray:
    """A strided view of at most ~16 Mpx: statistics and hashes of a huge image without float copies of it."""
    step = int(np.ceil(np.sqrt(arr.shape[0] * arr.shape[1] / MAX_STAT_PIXELS)))
    return arr[::step, ::step] if step > 1 else arr


def _unreadable(path: str, reason: str, kind: str) -> dict[str, Any]:
    return {"readable": False, "reason": reason, "reason_kind": kind}


def _mode(arr: np.ndarray) -> str:
    if arr.ndim == 3:
        return {3: "RGB", 4: "RGBA"}.get(arr.shape[-1], f"{arr.shape[-1]}-channel")
    return {"uint8": "L", "uint16": "I;16", "int32": "I", "float32": "F", "bool": "1"}.get(
        str(arr.dtype), str(arr.dtype)
    )


def thumbnail(arr: np.ndarray, gray: np.ndarray) -> bytes:
    """Small JPEG for the HTML report (kept in memory so no image is decoded twice)."""

    arr = _strided(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
        im = Image.fromarray(np.ascontiguousarray(arr[..., :3]))
    else:
        im = Image.fromarray((np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8))
    im.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()
