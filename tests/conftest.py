"""Shared fixtures: tiny generated datasets (fast, deterministic) and the real-data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_class_folders(
    root: Path,
    *,
    classes=("cyst", "normal"),
    n_per_class: int = 12,
    size: int = 32,
    split_level: bool = False,
    seed: int = 0,
) -> Path:
    """Write a learnable toy dataset: 'cyst' images hold a bright disc, 'normal' ones only noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for ci, cls in enumerate(classes):
        for i in range(n_per_class):
            img = rng.normal(60, 12, (size, size))
            if ci % 2 == 0:
                cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < (size // 6) ** 2] += 140
            if ci >= 2:
                img[:, : size // 3] += 70  # a third class gets a bright band
            split = ("test" if i % 4 == 0 else "train") if split_level else ""
            out = root / split / cls / f"{cls}_{i:03d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "data")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def make_folders():
    """The generator function itself, for tests that need several datasets or other shapes."""
    return make_class_folders


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP start-up and spinning costs on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
