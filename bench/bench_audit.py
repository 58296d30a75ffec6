"""Audit speed on the real brain-MRI set (issue 3). Not a test: run by hand, paste into docs/benchmarks.md.

    .venv/bin/python bench/bench_audit.py [SOURCE] [--workers 2] [--out bench/out/audit-brain]

Times `medlens.auditing.run.audit` end to end (ingest, decoding every image once, all analyses, audit.json and
audit.html) and prints images/s and the duplicate findings.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
BRAIN = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"


def main() -> None:
    from medlens.auditing.run import audit

    ap = argparse.ArgumentParser()
    ap.add_argument("source", nargs="?", default=str(BRAIN))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "audit-brain"))
    args = ap.parse_args()
    start = time.perf_counter()
    result = audit(args.source, args.out, workers=args.workers, progress=False)
    total = time.perf_counter() - start
    s = result.to_dict()
    d = s["duplicates"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)\n")
    print(
        "| dataset | images | workers | total | scan | images/s (total) | exact groups | near groups "
        "| cross-label | images in groups |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {Path(args.source).name} | {s['n_images']} | {args.workers} | {total:.1f} s | "
        f"{s['timing']['scan_s']:.1f} s | {s['n_images'] / total:.0f} | {d['n_exact_groups']} | "
        f"{d['n_near_groups']} | {d['n_label_conflict']} | {d['n_images_in_groups']} |"
    )
    print(
        f"\nunreadable {len(s['unreadable'])}, size outliers {len(s['size_outliers'])}, "
        f"clusters k={s['clusters']['k']}; report in {args.out}"
    )
    for g in d["groups"][:3]:
        print(
            f"group {g['id']} ({g['kind']}, {', '.join(g['flags'])}): "
            + ", ".join(m["path"] for m in g["members"][:4])
        )


if __name__ == "__main__":
    main()
