"""Small image builders shared by the audit tests."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def texture(seed: int, size=(64, 64), mean: float = 60.0) -> np.ndarray:
    """A smooth random texture (distinct seeds give unrelated perceptual hashes).

    Two intensity populations differ in mean and contrast: 60 ± 15 and 180 ± 35.
    """
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=size), sigma=3)
    field = (field - field.mean()) / field.std()
    return np.clip(mean + (15 if mean < 128 else 35) * field, 0, 255).astype(np.uint8)


def save(root, rel: str, arr: np.ndarray, **kw) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return rel
