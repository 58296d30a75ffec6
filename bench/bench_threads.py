"""Training beside other programs: thread count and OpenMP waiting policy, idle against beside busy processes.

    .venv/bin/python bench/bench_threads.py [--budget 270] [--steps 2] [--flops] [--out FILE.json]

The default training step of ``cnn-small`` (batched augmentation, forward under bf16 autocast where this CPU
does bf16 natively, cross-entropy, backward, AdamW step: what medlens's Lightning module runs) on a batch of
32 at 128 px (brain MRI) and at 28 px (PneumoniaMNIST, stem stride 1), is timed for each candidate setting
(torch threads, ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, inter-op threads) in its own process, because
OpenMP reads its environment once, when it starts. Each setting runs idle, beside one CPU-burning process
(a busy loop at normal priority) and beside two. The machine is shared with other people's work, so the
measurement is interleaved (see :func:`measure`): a few steps per cell, block after block, until the budget
is spent; each cell is the median of all its steps. Reported: the median step time and images/s per cell,
and busy/idle throughput per setting.

Run it in the foreground: started from the background of a shell, the busy loops died at once (cause not
found), and such a run measures no load at all; the table shows it (busy equal to idle everywhere).

``--flops``: the bare convolution FLOP/s of this CPU (fp32 and bf16, forward + backward, 2 threads) and the
default step's achieved FLOP/s as a fraction of it (issue 20, item 6).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "threads.json"
#: (name, torch intra-op threads, inter-op threads or None, extra environment)
SETTINGS = [
    ("2 threads, OpenMP default", 2, None, {}),
    ("2 threads, PASSIVE", 2, None, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, ACTIVE", 2, None, {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("2 threads, GOMP_SPINCOUNT=10000", 2, None, {"GOMP_SPINCOUNT": "10000"}),
    ("1 thread, OpenMP default", 1, None, {}),
]
#: more settings (``--more``): inter-op threads do not matter to an eager training step, nor the waiting
#: policy to one thread (no OpenMP team waits); measured once to show it
MORE = [
    ("2 threads, PASSIVE, 1 inter-op", 2, 1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("1 thread, PASSIVE", 1, None, {"OMP_WAIT_POLICY": "PASSIVE"}),
]
#: (label, image size, channels, classes, stem stride)
SHAPES = [("128px", 128, 1, 4, 2), ("28px", 28, 1, 2, 1)]
BATCH = 32
LOADS = [0, 1, 2]
#: a busy loop at normal priority that ends with the process that started it (checked every ~1e6 turns); it
#: ignores SIGHUP, which the kernel sends to a stopped process whose process group is orphaned (a bench run
#: in the background of a shell that exits)
BURN = (
    "import os, signal\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\nparent = os.getppid()\ni = 0\n"
    "while i or os.getppid() == parent:\n    i = (i + 1) % 1000000\n"
)
CLEAN_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MEDLENS_THREADS")


def _env(extra: dict, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}
    env.update(extra, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT / "src"))
    return env


def _worker(spec: dict) -> None:
    """One setting in this fresh process: warm every shape up, say "ready", then answer each request line
    ``{"shape": label, "n": steps}`` with the step times as one JSON line."""
    import torch

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # stopped between turns (see BURN)
    torch.set_num_threads(spec["threads"])
    if spec["interop"]:
        torch.set_num_interop_threads(spec["interop"])
    steps = {}
    for label, size, channels, classes, stride in SHAPES:
        steps[label] = _default_step(size, channels, classes, stride)
        for _ in range(4):  # oneDNN builds its kernels over the first calls of a shape
            steps[label]()
    print(json.dumps({"ready": True, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        times = []
        for _ in range(req["n"]):
            t0 = time.perf_counter()
            steps[req["shape"]]()
            times.append(time.perf_counter() - t0)
        print(json.dumps(times), flush=True)


def _default_step(size: int, channels: int, classes: int, stride: int):
    """The training step of medlens's classification module on random tensors at the default precision."""
    import torch
    import torch.nn.functional as F

    from medlens.data.augment import AugmentSpec, augment_batch
    from medlens.models import create_model
    from medlens.training.config import TrainConfig

    torch.manual_seed(0)
    model = create_model(
        "cnn-small", num_classes=classes, in_channels=channels, image_size=size, stem_stride=stride
    ).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    bf16 = TrainConfig().resolved_precision() == "bf16-mixed"
    x = torch.rand(BATCH, channels, size, size)
    y = torch.randint(0, classes, (BATCH,))
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        xb = augment_batch(x, AugmentSpec(), gen).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step.model = model  # for the FLOP count
    step.bf16 = bf16
    return step


def _time(step, seconds: float, warmup: int = 4, most: int = 40) -> dict:
    """Median step time after ``warmup`` steps (oneDNN builds its kernels over the first calls), timing for
    about ``seconds`` (at least 4 steps)."""
    for _ in range(warmup):
        step()
    times: list[float] = []
    while len(times) < most and (len(times) < 4 or sum(times) < seconds):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    q = statistics.quantiles(times, n=4)
    med = statistics.median(times)
    return {"median_ms": round(med * 1e3, 1), "iqr_ms": round((q[2] - q[0]) * 1e3, 1), "steps": len(times)}


def _burners(n: int) -> list[subprocess.Popen]:
    """``n`` burners, paused (SIGSTOP) until a measurement wants them."""
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(n)]
    for p in procs:
        p.send_signal(signal.SIGSTOP)
    return procs


def _workers() -> list[subprocess.Popen]:
    procs = []
    for _name, threads, interop, extra in SETTINGS:
        spec = json.dumps({"threads": threads, "interop": interop})
        cmd = [sys.executable, __file__, "--worker", spec]
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
        procs.append(subprocess.Popen(cmd, env=_env(extra, threads), **pipes))
    for p in procs:  # they warm up side by side; timing starts once all are ready
        json.loads(p.stdout.readline())
        # stopped between its turns: an ACTIVE-policy worker's OpenMP threads spin for seconds after its
        # last step, and would burn a core while another setting is timed
        p.send_signal(signal.SIGSTOP)
    return procs


def measure(budget_s: float, steps: int) -> list[dict]:
    """Interleaved: block after block, every (shape, setting, load) runs ``steps`` steps, the settings and
    loads in a rotating order, until ``budget_s`` is spent. One setting runs at a time (the others wait on
    their pipe, using no CPU), and the burners are resumed (SIGCONT) only around the steps that want them, so
    that whatever else the shared machine does falls on every cell alike; the workers not being timed are
    stopped (SIGSTOP). A row per block and cell."""
    burners, workers = _burners(max(LOADS)), []
    rows, block = [], 0
    try:
        workers = _workers()
        t_end = time.perf_counter() + budget_s
        while time.perf_counter() < t_end:
            for shape, *_ in SHAPES:
                for k in range(len(SETTINGS)):
                    i = (k + block) % len(SETTINGS)
                    for load in LOADS[block % 3 :] + LOADS[: block % 3]:
                        for j, b in enumerate(burners):
                            b.send_signal(signal.SIGCONT if j < load else signal.SIGSTOP)
                        workers[i].send_signal(signal.SIGCONT)
                        time.sleep(0.05)
                        workers[i].stdin.write(json.dumps({"shape": shape, "n": steps}) + "\n")
                        workers[i].stdin.flush()
                        times = json.loads(workers[i].stdout.readline())
                        workers[i].send_signal(signal.SIGSTOP)
                        rows.append(
                            {
                                "setting": SETTINGS[i][0],
                                "shape": shape,
                                "load": load,
                                "block": block,
                                "ms": [round(t * 1e3, 1) for t in times],
                                "loadavg": os.getloadavg()[0],
                            }
                        )
            print(f"block {block} done, load average {os.getloadavg()[0]:.2f}", flush=True)
            block += 1
    finally:
        for b in burners:
            b.send_signal(signal.SIGCONT)
            b.kill()
            b.wait()
        for w in workers:
            w.send_signal(signal.SIGCONT)
            w.kill()
            w.wait()
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per setting and shape, images/s idle / 1 burner / 2 burners (median over rounds) and the
    busy/idle ratios; a setting slower beside one burner than 1 thread beside one burner is marked."""
    med: dict = {}
    for row in rows:
        med.setdefault((row["setting"], row["shape"], row["load"]), []).extend(row["ms"])
    ms = {k: statistics.median(v) for k, v in med.items()}
    lines = [
        "| setting | shape | step ms idle / 1 busy / 2 busy | images/s idle | 1 busy | 2 busy | "
        "1 busy / idle | 2 busy / idle | steps per cell, idle IQR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, *_ in SETTINGS:
        for shape, *_ in SHAPES:
            t = [ms.get((name, shape, load)) for load in LOADS]
            if None in t:
                continue
            ips = [BATCH / (v / 1e3) for v in t]
            one = ms.get(("1 thread, OpenMP default", shape, 1))
            mark = " (slower than 1 thread)" if one and t[1] > one * 1.05 else ""
            idle = med[(name, shape, 0)]
            q = statistics.quantiles(idle, n=4) if len(idle) > 1 else [idle[0]] * 3
            lines.append(
                f"| {name} | {shape} | {t[0]:.0f} / {t[1]:.0f} / {t[2]:.0f} | {ips[0]:.0f} | {ips[1]:.0f} | "
                f"{ips[2]:.0f} | {ips[1] / ips[0]:.2f}{mark} | {ips[2] / ips[0]:.2f} | "
                f"{len(idle)}, {q[0]:.0f}-{q[2]:.0f} ms |"
            )
    return "\n".join(lines)


def _flops_child(seconds: float) -> None:
    """Bare conv GFLOP/s (fp32, bf16) and the default 128 px step's GFLOP/s, in this process."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    out = {"threads": torch.get_num_threads()}
    n, c, hw = 32, 64, 32  # a cnn-small stage-2 sized layer at 128 px: 64 -> 64 channels, 3x3, 32x32
    conv_flops = 3 * 2 * n * hw * hw * c * c * 9  # forward, input gradient, weight gradient
    for dtype in (torch.float32, torch.bfloat16):
        conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(dtype, memory_format=torch.channels_last)
        x = torch.randn(n, c, hw, hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)

        def conv_step(conv=conv, x=x) -> None:
            conv(x).sum().backward()

        cell = _time(conv_step, seconds)
        out[f"conv_{dtype}".replace("torch.", "")] = {**cell, "gflops": conv_flops / cell["median_ms"] / 1e6}
    step = _default_step(128, 1, 4, 2)
    with FlopCounterMode(display=False) as counter:
        step()
    cell = _time(step, seconds)
    flops = counter.get_total_flops()
    out["step_128px"] = {
        **cell,
        "bf16": step.bf16,
        "gflop_per_step": flops / 1e9,
        "gflops": flops / cell["median_ms"] / 1e6,
        "images_per_s": BATCH / cell["median_ms"] * 1e3,
    }
    print(json.dumps(out))


def flops(seconds: float, extra: dict) -> dict:
    cmd = [sys.executable, __file__, "--flops-child", str(seconds)]
    done = subprocess.run(cmd, env=_env(extra, 2), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    res = json.loads(done.stdout.strip().splitlines()[-1])
    key = "conv_bfloat16" if res["step_128px"]["bf16"] else "conv_float32"
    res["step_fraction_of_bare_conv"] = res["step_128px"]["gflops"] / res[key]["gflops"]
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of interleaved measurement")
    parser.add_argument("--steps", type=int, default=2, help="steps per cell and block")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per FLOP/s measurement")
    parser.add_argument("--flops", action="store_true", help="also the bare convolution FLOP/s")
    parser.add_argument("--only-flops", action="store_true")
    parser.add_argument("--more", action="store_true", help="also the settings that should not matter")
    parser.add_argument("--only", help="run only the settings whose name contains this text")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--flops-child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(json.loads(args.worker))
    if args.flops_child:
        return _flops_child(args.flops_child)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "nproc": os.cpu_count()}
    report["load_average_start"] = os.getloadavg()
    t0 = time.perf_counter()
    if args.more:
        SETTINGS.extend(MORE)
    if args.only:
        SETTINGS[:] = [s for s in SETTINGS if args.only in s[0]]
    if not args.only_flops:
        report["rows"] = measure(args.budget, args.steps)
        print(table(report["rows"]))
    if args.flops or args.only_flops:
        report["flops"] = flops(args.seconds, {"OMP_WAIT_POLICY": "PASSIVE"})
        print(json.dumps(report["flops"], indent=1))
    report["load_average_end"] = os.getloadavg()
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out} ({report['wall_s']} s)")


if __name__ == "__main__":
    main()
