"""BatchNorm folded into convolutions for inference, on and off (issue 13, speed levers). Not a test.

    .venv/bin/python bench/bench_fusion.py

The brain-MRI run bench/out/cal-brain (cnn-small, 128 px): the same network loaded with ``fuse=False`` and
``fuse=True`` (the default of ``load_model``), median forward time of 30 calls after 5 warm-up calls at
batch 1 and 32, side by side in one process; and the largest output difference.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from medlens.models.checkpoint import load_model

RUN = Path(__file__).resolve().parents[1] / "bench" / "out" / "cal-brain"


def _median_ms(net, x) -> float:
    with torch.no_grad():
        for _ in range(5):
            net(x)
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    plain, fused = load_model(RUN, fuse=False).model, load_model(RUN).model
    size = load_model(RUN).spec.image_size
    print(f"threads {torch.get_num_threads()}, {size} px")
    for batch in (1, 32):
        x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            diff = (plain(x) - fused(x)).abs().max().item()
        a, b = _median_ms(plain, x), _median_ms(fused, x)
        print(f"batch {batch}: plain {a:.2f} ms, fused {b:.2f} ms, ratio {b / a:.3f}, max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
