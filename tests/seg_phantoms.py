"""Synthetic segmentation and detection data: bright ellipses (2D slices) and spheres (3D volumes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def ellipse_pair(rng: np.random.Generator, size: int, empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One noisy image (size, size) uint8 with a bright ellipse, and its {0, 255} mask."""
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(50, 8, (size, size))
    mask = np.zeros((size, size), dtype=np.uint8)
    if not empty:
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        ay, ax = rng.uniform(0.12, 0.25, 2) * size
        inside = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1
        image[inside] += 140
        mask[inside] = 255
    return np.clip(image, 0, 255).astype(np.uint8), mask


def make_kaggle(
    root: Path, *, n_patients: int = 8, n_slices: int = 6, size: int = 32, seed: int = 0, rgb: bool = False
) -> Path:
    """A kaggle_3m-style tree: <root>/<patient>/<patient>_<n>.tif + _mask.tif; every third slice is empty."""
    rng = np.random.default_rng(seed)
    for p in range(n_patients):
        folder = root / f"P{p:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, n_slices + 1):
            image, mask = ellipse_pair(rng, size, empty=n % 3 == 0)
            Image.fromarray(np.dstack([image] * 3) if rgb else image).save(folder / f"P{p:02d}_{n}.tif")
            Image.fromarray(mask).save(folder / f"P{p:02d}_{n}_mask.tif")
    return root


def make_spheres(
    root: Path, *, n_cases: int = 6, shape=(24, 24, 16), seed: int = 0, affine: np.ndarray | None = None
) -> Path:
    """NIfTI imagesTr/labelsTr folders of noisy volumes with one bright sphere each."""
    from medlens.io.volumes import write_nifti

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    for i in range(n_cases):
        centre = rng.uniform(0.35, 0.65, 3) * np.array(shape)
        radius = rng.uniform(0.18, 0.25) * min(shape)
        inside = ((grid - centre[:, None, None, None]) ** 2).sum(0) <= radius**2
        image = rng.normal(40, 6, shape) + 120 * inside
        write_nifti(image.astype(np.float32), affine, root / "imagesTr" / f"case{i}.nii.gz")
        write_nifti(inside.astype(np.uint8), affine, root / "labelsTr" / f"case{i}.nii.gz")
    return root
