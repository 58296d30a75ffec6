"""Single-image predict over HTTP on loopback (issue 12). Not a test: run by hand, paste into
docs/benchmarks.md.

    .venv/bin/python bench/bench_serve.py

Starts ``medlens serve`` (one uvicorn process, no job worker) on 127.0.0.1 with the brain-MRI run
``bench/out/cal-brain`` (cnn-small 128 px, calibrated; from bench/bench_calibration.py) and posts brain test
JPEGs to ``POST /api/runs/{id}/predict`` with ``explain=false`` and ``explain=true``: p50 / p99 latency and
requests per second with 1 and 16 concurrent clients (httpx, asyncio, bounded). Baseline in the same run:
``medlens.predict`` of one image in-process (the model already loaded). Memory: the server's resident set
after 150 warm-up requests (1 and 16 clients) and after the 1 000 measured ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "bench" / "out" / "cal-brain"
TOKEN = "bench-token-0123456789"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _images(n: int) -> list[bytes]:
    df = pd.read_csv(RUN / "manifest.csv")
    paths = [(RUN / p).resolve() for p in df.loc[df["split"] == "test", "image"]][:n]
    return [p.read_bytes() for p in paths]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _load(base: str, run_id: int, images: list[bytes], n: int, clients: int, explain: bool) -> dict:
    latencies: list[float] = []
    queue = list(range(n))

    async def client_loop(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            r = await client.post(
                f"{base}/api/runs/{run_id}/predict",
                params={"explain": str(explain).lower()},
                files={"file": (f"img{i}.jpg", images[i % len(images)], "image/jpeg")},
                headers=HEADERS,
            )
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    ms = sorted(1000 * x for x in latencies)
    return {
        "explain": explain,
        "clients": clients,
        "n": n,
        "p50_ms": round(statistics.median(ms), 1),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1),
        "req_per_s": round(n / wall, 1),
    }


def _baseline(images: list[bytes]) -> float:
    import medlens

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.jpg"
        path.write_bytes(images[0])
        medlens.predict(RUN, [path])
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            medlens.predict(RUN, [path])
            times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 1)


def main() -> None:
    images = _images(200)
    data = Path(tempfile.mkdtemp(prefix="medlens-serve-bench-"))
    shutil.copytree(RUN, data / "runs" / "brain", ignore=shutil.ignore_patterns("checkpoints"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MEDLENS_API_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "medlens", "serve", "--data-dir", str(data), "--port", str(port)]
    server = subprocess.Popen(
        [*cmd, "--workers", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        [run] = httpx.get(f"{base}/api/runs", headers=HEADERS).json()
        stamp = time.strftime("%Y-%m-%d %H:%M")
        print(f"# {stamp} {platform.node()} {platform.machine()} {os.cpu_count()} cpus")
        asyncio.run(_load(base, run["id"], images, 50, 1, True))  # warm-up: model, index, fonts
        asyncio.run(_load(base, run["id"], images, 100, 16, True))  # and the server's thread pool
        rss0 = _rss_mb(server.pid)
        rows = []
        for explain in (False, True):
            for clients in (1, 16):
                rows.append(asyncio.run(_load(base, run["id"], images, 200, clients, explain)))
                print(json.dumps(rows[-1]), flush=True)
        asyncio.run(_load(base, run["id"], images, 1000 - 4 * 200, 16, False))
        rss1 = _rss_mb(server.pid)
        print(
            json.dumps(
                {
                    "rss_mb_after_warmup": round(rss0, 1),
                    "rss_mb_after_1000": round(rss1, 1),
                    "growth": round(rss1 / rss0 - 1, 4),
                }
            )
        )
        print(json.dumps({"baseline_in_process_predict_ms": _baseline(images)}))
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
