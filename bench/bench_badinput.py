"""Hostile input on real data: train and audit a brain-MRI folder that holds bombs and broken files.

    .venv/bin/python bench/bench_badinput.py [--out bench/out/badinput] [--epochs 2]

Builds 160 real brain-MRI JPEGs (40 per class from ../shared/data/brain-tumor-mri/Training), then adds 6
broken files (the 70-byte PNG declaring 40 000² px, a TIFF declaring 40 000², a deflate TIFF declaring 30
000², a float TIFF holding NaN, a JPEG cut in half, a zero-byte file) and 10 odd-but-valid ones (EXIF-rotated,
16-bit, RGBA and palette PNGs, a multi-page TIFF, an animated GIF, a CMYK JPEG, a BMP, a real CT DICOM and a
genuine 12 000² PNG of 140 KB). `medlens audit` and `medlens train` run on it and, side by side in the same
run, on the 160 clean JPEGs alone (the baseline), each in its own process under `/usr/bin/time -v`. Printed:
exit code, wall seconds, peak RSS and whether every broken file is named on the terminal.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BRAIN = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


def build(clean: Path, hostile: Path) -> list[str]:
    """Write the clean folder and the hostile one (clean + 16 files); return the broken files' names."""
    from tests.badinput import make

    for folder in (clean, hostile):
        shutil.rmtree(folder, ignore_errors=True)
        for c in CLASSES:
            (folder / c).mkdir(parents=True)
            for p in sorted((BRAIN / c).glob("*.jpg"))[:40]:
                shutil.copy(p, folder / c / p.name)
    g, m, n, p = (hostile / c for c in CLASSES)
    real = np.asarray(Image.open(sorted((BRAIN / "glioma").glob("*.jpg"))[50]).convert("L"))
    broken = [
        make.bomb_png(g / "bomb.png"),
        make.bomb_tiff(m / "bomb.tif"),
        make.deflate_bomb_tiff(n / "deflate-bomb.tif"),
        make.float_tiff(p / "nan.tif"),
        make.cut(_copy_real(g / "cut.jpg", "glioma", 60)),
        (m / "empty.jpg"),
    ]
    broken[-1].write_bytes(b"")
    make.exif_jpeg(g / "exif6.jpg", 224, 180)
    make.png(m / "sixteen-bit.png", (real.astype(np.uint16) * 257))
    make.png(n / "rgba.png", real, "RGBA")
    make.png(p / "palette.png", real, "P")
    make.multipage_tiff(g / "pages.tif", 5, 224)
    make.gif_frames(m / "frames.gif", 3, 224)
    Image.fromarray(real).convert("CMYK").save(n / "cmyk.jpg")
    Image.fromarray(real).save(p / "plain.bmp")
    shutil.copy(make.dicom_testfile("CT_small.dcm"), g / "ct.dcm")
    make.zeros_png(n / "huge-12000.png")
    return [b.name for b in broken]


def _copy_real(dest: Path, cls: str, index: int) -> Path:
    shutil.copy(sorted((BRAIN / cls).glob("*.jpg"))[index], dest)
    return dest


def timed(args: list[str]) -> dict:
    """Run ``medlens ARGS`` under /usr/bin/time -v; exit code, wall seconds, peak RSS and the output."""
    cmd = ["/usr/bin/time", "-v", str(ROOT / ".venv" / "bin" / "medlens"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", proc.stderr)
    seconds = (
        sum(float(x) * 60**i for i, x in enumerate(reversed(wall.group(1).split(":")))) if wall else None
    )
    return {
        "code": proc.returncode,
        "rss_mb": int(rss.group(1)) / 1024 if rss else None,
        "seconds": seconds,
        "output": proc.stdout + proc.stderr,
        "traceback": "Traceback" in proc.stdout + proc.stderr,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "badinput"))
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    clean, hostile = out / "clean", out / "hostile"
    broken = build(clean, hostile)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared)")
    print(
        f"files: clean {sum(1 for _ in clean.rglob('*.*'))}, hostile {sum(1 for _ in hostile.rglob('*.*'))}\n"
    )
    print("| command | data | exit | wall s | peak RSS MB | broken files named | traceback |")
    print("|---|---|---|---|---|---|---|")
    for name, data in (("clean", clean), ("hostile", hostile)):
        for label, argv in (
            ("audit", ["audit", str(data), "-o", str(out / f"audit-{name}"), "--quiet"]),
            (
                "train",
                [
                    "train",
                    str(data),
                    "-o",
                    str(out / f"run-{name}"),
                    "--overwrite",
                    "--epochs",
                    str(args.epochs),
                    "--image-size",
                    "64",
                    "--quiet",
                ],
            ),
        ):
            r = timed(argv)
            named = sum(b in r["output"] for b in broken) if name == "hostile" else "-"
            print(
                f"| `medlens {label}` | {name} | {r['code']} | {r['seconds']:.1f} | {r['rss_mb']:.0f} | "
                f"{named}{'/' + str(len(broken)) if name == 'hostile' else ''} | {r['traceback']} |"
            )
            if r["code"] != 0:
                print(r["output"][-2000:])


if __name__ == "__main__":
    main()
