"""`make bench`: run the benchmark scripts in a row, quickest first. Not a test.

    .venv/bin/python bench/run_all.py            # those that take about 10 minutes or less on 2 cores
    .venv/bin/python bench/run_all.py --all      # every benchmark (about two hours on 2 cores)

Each script prints (or appends to bench/out/*.jsonl) its own figures; paste them into docs/benchmarks.md with
the date and machine. The real datasets must be at ../shared/data.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (script and its arguments, rough minutes on the 2-core reference machine)
BENCHES = [
    (["bench_clinical_eval.py"], 1),
    (["bench_neardup.py"], 1),
    (["bench_audit.py"], 1),
    (["bench_badinput.py"], 3),
    (["bench_robustness19.py"], 8),
    (["bench_plan_determinism.py"], 15),
    (["bench_threads.py"], 8),
    (["bench_calibration.py", "prepare", "train", "calibrate"], 6),
    (["bench_fusion.py"], 1),
    (["bench_serve.py"], 3),
    (["bench_search.py", "--budget", "9m", "--jobs", "2"], 6),
    (["bench_explain_triage.py", "prepare-lgg", "cam", "ood", "triage", "simulate", "pointing"], 10),
    (["bench_levers.py", "train"], 11),
    (["bench_defaults.py", "prepare"], 1),
    (["bench_defaults.py", "run", "pneumonia", "brain3-64", "lgg-tumour", "brain"], 40),
    (["bench_levers.py", "infer", "bench/out/defaults/run-brain"], 40),  # needs the brain run above
    (["bench_classification.py", "brain-cnn", "brain-logreg", "pneumonia-cnn", "pneumonia-logreg"], 15),
    (["bench_segmentation.py"], 60),
]


def main(argv: list[str]) -> int:
    limit = float("inf") if "--all" in argv else 10
    failed = []
    for args, minutes in BENCHES:
        if minutes > limit:
            print(f"skipped (about {minutes} min; run with --all): bench/{' '.join(args)}")
            continue
        print(f"== bench/{' '.join(args)}", flush=True)
        t0 = time.time()
        if subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]]).returncode != 0:
            failed.append(args[0])
        print(f"   {time.time() - t0:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
