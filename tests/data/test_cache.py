import numpy as np
import pandas as pd
from PIL import Image

from medlens.data.cache import cache_images, to_uint8
from medlens.data.manifest import Manifest


def test_to_uint8_conversions():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 100
    assert to_uint8(rgb, 1)[0, 0, 0] == round(100 * 0.299)
    gray = np.full((4, 4), 7, np.uint8)
    assert to_uint8(gray, 3).shape == (4, 4, 3) and (to_uint8(gray, 3) == 7).all()
    rgba = np.dstack([rgb, np.full((4, 4), 255, np.uint8)])
    assert to_uint8(rgba, 3).shape == (4, 4, 3)
    deep = np.linspace(0, 4095, 100, dtype=np.uint16).reshape(10, 10)
    out = to_uint8(deep, 1)[..., 0]
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255  # stretched between percentiles


def test_cache_skips_unreadable_and_memoises(tmp_path):
    good = tmp_path / "a.png"
    Image.fromarray(np.full((20, 30), 200, np.uint8)).save(good)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "broken.png").write_bytes(good.read_bytes()[:40])
    m = Manifest(
        pd.DataFrame({"image": ["a.png", "empty.png", "broken.png"], "label": ["x", "y", "x"]}), tmp_path
    )
    c = cache_images(m, 16, 1, progress=False)
    assert c.images.shape == (1, 1, 16, 16) and list(c.kept) == [0]
    reasons = {s["case_id"]: s["reason"] for s in c.skipped}
    assert "zero-byte" in reasons["empty"] and reasons["broken"]
    assert cache_images(m, 16, 1, progress=False) is c  # decoded once
