"""The same defaults under different machine load give the same plan and the same model (issue 20, item 1).

    .venv/bin/python bench/bench_plan_determinism.py [--src NPZ_OR_FOLDER]

Runs ``medlens plan SRC`` and ``medlens train SRC --quiet`` (defaults only) twice: once as the machine is,
once beside a CPU-burning process (a busy loop in a child process, killed at the end). Compares the two
``plans.json`` byte for byte, every tensor of the two ``model.pt`` with ``torch.equal``, and the validation
metrics of the two ``summary.json``. Reports each command's wall time and the load average around it
(timings are context; identity is the result). Results go to ``bench/out/plan-determinism/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "plan-determinism"
MEDLENS = [str(ROOT / ".venv" / "bin" / "medlens")]
DEFAULT_SRC = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist_trainval.npz"


def _timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - start, 1)


def _one(src: Path, name: str, busy: bool) -> dict:
    burner = None
    if busy:
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        load_before = os.getloadavg()[0]
        plan_s = _timed([*MEDLENS, "plan", str(src), "-o", str(OUT / f"{name}-plan.json")])
        train_s = _timed([*MEDLENS, "train", str(src), "-o", str(OUT / name), "--quiet"])
        load_after = os.getloadavg()[0]
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return {
        "busy": busy,
        "plan_s": plan_s,
        "train_s": train_s,
        "load": [round(load_before, 2), round(load_after, 2)],
    }


def _same_weights(a: Path, b: Path) -> tuple[bool, int]:
    import torch

    sa = torch.load(a / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    sb = torch.load(b / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    same = sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    return same, len(sa)


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _metrics(run: Path) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    return {"split": summary["split"], **{k: v["value"] for k, v in summary["metrics"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    runs = {"as-is": _one(args.src, "as-is", busy=False), "busy": _one(args.src, "busy", busy=True)}
    a, b = OUT / "as-is", OUT / "busy"
    same_w, n_tensors = _same_weights(a, b)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "src": str(args.src),
        "runs": runs,
        "plan_json_identical": _bytes(OUT / "as-is-plan.json") == _bytes(OUT / "busy-plan.json"),
        "run_plans_json_identical": _bytes(a / "plans.json") == _bytes(b / "plans.json"),
        "weights_identical": same_w,
        "n_tensors": n_tensors,
        "metrics": {"as-is": _metrics(a), "busy": _metrics(b)},
        "estimate": {
            name: json.loads((OUT / name / "train.json").read_text()).get("estimate") for name in runs
        },
    }
    result["metrics_identical"] = result["metrics"]["as-is"] == result["metrics"]["busy"]
    (OUT / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
