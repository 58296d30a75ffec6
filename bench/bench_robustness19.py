"""Robustness, second probe: real DICOM read like pydicom, and what the batch/OOD/ingest changes cost.

    PYTHONPATH=src .venv/bin/python bench/bench_robustness19.py [--out DIR] [--skip-pytest]

Everything runs on one thread (torch and OMP_NUM_THREADS=1 for the children): on the shared 2-core machine,
two-thread inference took 15-73 s instead of about 1 s per 200 images while other jobs loaded the CPU, which
buried the predict ratios in noise.

Four measurements in one run (about 5-8 minutes on 2 cores), printed and written to OUT/results.json:

1. Every file of ``pydicom.data.get_testdata_files()`` and ../shared/data/dicom-mr-orientation through
   ``medlens.io.images.decode_image``, compared with pydicom after the documented transforms (the reference
   of tests/io/test_dicom_corpus.py, imported from there): exact reads, one-line refusals by kind, silent
   misreads (read but different, or read where pydicom cannot decode), internal errors (any exception that
   is not medlens's one-line refusal), warnings that leaked. Then the decode time of the files both read:
   medlens against pydicom's plain ``dcmread`` + ``pixel_array`` (frame 1 of a multi-frame file on both
   sides), and against pydicom with the documented transforms (the corpus test's reference), best of 3.
2. ``medlens.predict`` on the 200 images of the embedded demo sample with a 1-epoch cnn-small run: with the
   out-of-distribution flag against ``ood=False``: a cold call first (imports, first model load), the call
   that builds the run's embedding index, then 3 interleaved rounds of plain / index in memory (a server) /
   index read from disk (a CLI call).
3. ``medlens.ingest`` (unlabelled) on the Siemens MR folder and on a flat folder of the pydicom-data DICOM
   files: wall time, images listed, non-image DICOM objects left out.
4. The hostile-input corpus: ``len(CASES)`` and the wall time of ``pytest tests/badinput -q``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]
MR = ROOT.parent / "shared" / "data" / "dicom-mr-orientation"
SAMPLE = ROOT / "src" / "medlens" / "sample" / "brain-mri"


def _corpus_module():
    """tests/io/test_dicom_corpus.py as a module (its folder is named like the stdlib's io)."""
    spec = importlib.util.spec_from_file_location(
        "dicom_corpus", ROOT / "tests" / "io" / "test_dicom_corpus.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corpus_files() -> list[str]:
    from pydicom.data import get_testdata_files

    files = sorted(str(p) for p in get_testdata_files() if Path(p).is_file())
    if MR.is_dir():
        files += sorted(str(p) for p in MR.rglob("*") if p.is_file())
    return files


def _same(actual: np.ndarray, expected: np.ndarray) -> bool:
    """The corpus test's comparison: same shape, not flattened, equal (float within 1e-6)."""
    if actual.shape != expected.shape or (np.ptp(actual) == 0 and np.ptp(expected) > 0):
        return False
    if np.issubdtype(expected.dtype, np.floating):
        return bool(np.allclose(actual, expected, rtol=1e-6, atol=1e-6))
    return bool(np.array_equal(actual, expected))


def classify(path: str, reference) -> dict:
    """One file's outcome: exact / refused / misread / unexpected-read / internal, and leaked warnings."""
    from medlens.errors import UnreadableImageError
    from medlens.io.images import decode_image

    expected = reference(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decoded = decode_image(path)
        except UnreadableImageError as err:
            one_line = "\n" not in str(err) and "internal error" not in str(err)
            outcome = "refused" if one_line else "internal"
            extra = {"kind": err.kind, "reason": err.reason, "pydicom_decodes": expected is not None}
            return {"path": path, "outcome": outcome, **extra, "warnings": len(caught)}
        except Exception as err:  # an internal error is what is being counted
            return {"path": path, "outcome": "internal", "reason": f"{type(err).__name__}: {err}"}
    if expected is None:
        outcome = "read-pydicom-cannot"
    else:
        outcome = "exact" if _same(decoded.array, expected) else "misread"
    return {"path": path, "outcome": outcome, "warnings": len(caught), "notes": list(decoded.notes)}


def _best(fn, path: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    return min(times)


def _pydicom_plain(path: str) -> None:
    """pydicom's own read: dcmread and pixel_array, no LUT or window (as test_dicom_corpus reads it)."""
    import pydicom
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            ds = pydicom.dcmread(path, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:  # no file meta: the encoding it was read in
            implicit, little = ds.original_encoding
            explicit = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else explicit
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            ds.pixel_array_options(index=0)
        ds.pixel_array  # noqa: B018 - the decode is what is timed


def _medlens_decode(path: str) -> None:
    from medlens.io.images import decode_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decode_image(path)


def bench_corpus() -> dict:
    corpus = _corpus_module()
    files = corpus_files()
    t0 = time.perf_counter()
    rows = [classify(f, corpus._reference) for f in files]
    wall = time.perf_counter() - t0
    outcomes = Counter(r["outcome"] for r in rows)
    refused = [r for r in rows if r["outcome"] == "refused"]
    by_kind = Counter(r["kind"] for r in refused)
    by_reason = Counter(_reason_group(r["reason"]) for r in refused)
    timed = []
    for path in (r["path"] for r in rows if r["outcome"] == "exact"):
        ml, pd, ref = (_best(fn, path) for fn in (_medlens_decode, _pydicom_plain, corpus._reference))
        timed.append((path, ml, pd, ref))
    ratios = [t[1] / t[2] for t in timed]
    slowest = sorted(timed, key=lambda t: t[1] / t[2])[-5:]
    return {
        "files": len(files),
        "from_pydicom_data": sum(1 for f in files if not f.startswith(str(MR))),
        "from_shared_mr": sum(1 for f in files if f.startswith(str(MR))),
        "outcomes": dict(outcomes),
        "refused_by_kind": dict(by_kind),
        "refused_by_reason": dict(by_reason.most_common()),
        "refused_few": {  # the files behind each reason shared by at most 3 files
            g: [Path(r["path"]).name for r in refused if _reason_group(r["reason"]) == g]
            for g, n in by_reason.items()
            if n <= 3
        },
        "refused_though_pydicom_decodes": [Path(r["path"]).name for r in refused if r["pydicom_decodes"]],
        "misread": [r["path"] for r in rows if r["outcome"] in ("misread", "read-pydicom-cannot")],
        "internal": [(r["path"], r["reason"]) for r in rows if r["outcome"] == "internal"],
        "files_with_leaked_warnings": sum(1 for r in rows if r.get("warnings")),
        "classify_wall_s": round(wall, 1),
        "timed_files": len(timed),
        "medlens_total_s": round(sum(t[1] for t in timed), 3),
        "pydicom_total_s": round(sum(t[2] for t in timed), 3),
        "ratio_of_totals": round(sum(t[1] for t in timed) / sum(t[2] for t in timed), 2),
        "median_ratio": round(statistics.median(ratios), 2),
        "p90_ratio": round(float(np.percentile(ratios, 90)), 2),
        "median_medlens_ms": round(1000 * statistics.median(t[1] for t in timed), 2),
        "median_pydicom_ms": round(1000 * statistics.median(t[2] for t in timed), 2),
        "pydicom_with_transforms_total_s": round(sum(t[3] for t in timed), 3),
        "ratio_to_pydicom_with_transforms": round(sum(t[1] for t in timed) / sum(t[3] for t in timed), 2),
        "median_ratio_to_pydicom_with_transforms": round(statistics.median(t[1] / t[3] for t in timed), 2),
        # (file, medlens / plain pydicom, medlens / pydicom with transforms, medlens ms)
        "highest_ratios": [
            (Path(p).name, round(ml / pd, 2), round(ml / ref, 2), round(1000 * ml, 1))
            for p, ml, pd, ref in slowest
        ],
    }


def _reason_group(reason: str) -> str:
    """A refusal's reason without the file-specific parts (numbers, quoted names), to group them."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", reason)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:110]


def bench_predict(out: Path) -> dict:
    import torch

    from medlens.explaining.embedding import _LOADED

    torch.set_num_threads(1)
    run = out / "run-sample"
    t0 = time.perf_counter()
    if not (run / "model.pt").is_file():
        shutil.rmtree(run, ignore_errors=True)
        cmd = [sys.executable, "-m", "medlens", "train", str(SAMPLE), "-o", str(run)]
        cmd += ["--model", "cnn-small", "--epochs", "1", "--quiet"]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    train_s = time.perf_counter() - t0
    for name in os.listdir(run):  # the first OOD call must build the index
        if name.startswith("explain_index"):
            os.remove(run / name)
    n = sum(1 for q in SAMPLE.rglob("*") if q.is_file() and q.suffix.lower() in {".jpg", ".png"})
    cold, _ = _predict(run, False)  # pays the imports and the first model load
    first, flagged = _predict(run, True)  # builds the index
    times: dict[str, list[float]] = {"no_ood": [], "ood_in_memory": [], "ood_from_disk": []}
    for _ in range(3):  # interleaved so that a burst of load from other processes hits every variant
        times["no_ood"].append(_predict(run, False)[0])
        times["ood_in_memory"].append(_predict(run, True)[0])  # a server: the index stays loaded
        _LOADED.clear()
        times["ood_from_disk"].append(_predict(run, True)[0])  # a CLI call: the index is read from disk
    plain_min, plain_med = min(times["no_ood"]), statistics.median(times["no_ood"])
    return {
        "train_s": round(train_s, 1),
        "torch_threads": torch.get_num_threads(),
        "images": n,
        "ood_flagged": flagged,
        "cold_no_ood_s": cold,
        "ood_first_s": first,
        **{f"{k}_s": v for k, v in times.items()},
        "ratio_first_to_median_plain": round(first / plain_med, 2),
        **{f"ratio_{k}_min": round(min(v) / plain_min, 2) for k, v in times.items() if k != "no_ood"},
        **{
            f"ratio_{k}_median": round(statistics.median(v) / plain_med, 2)
            for k, v in times.items()
            if k != "no_ood"
        },
    }


def _predict(run: Path, ood: bool) -> tuple[float, int]:
    """Wall seconds of one ``medlens.predict`` over the sample and how many images it flagged."""
    import medlens

    t0 = time.perf_counter()
    records = medlens.predict(run, [SAMPLE], ood=ood)
    wall = round(time.perf_counter() - t0, 2)
    assert len(records) == 200 and not any("error" in r for r in records)
    assert all(("ood" in r) == ood for r in records)
    return wall, sum(1 for r in records if (r.get("ood") or {}).get("flag"))


def bench_ingest(out: Path) -> dict:
    from pydicom.misc import is_dicom

    import medlens

    mixed = out / "pydicom-data-flat"
    shutil.rmtree(mixed, ignore_errors=True)
    mixed.mkdir(parents=True)
    from pydicom.data import get_testdata_files

    copied = 0
    for f in sorted(get_testdata_files()):
        p = Path(f)
        if p.is_file() and (p.suffix.lower() == ".dcm" or is_dicom(p)):
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", re.split(r"[/\\](?:data|test_files)[/\\]", f)[-1])
            shutil.copy(p, mixed / (name if p.suffix else f"{name}.dcm"))
            copied += 1
    result = {"pydicom_flat_files": copied}
    for label, folder in (("shared_mr", MR), ("pydicom_flat", mixed)):
        if not folder.is_dir():
            continue
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                manifest = medlens.ingest(folder, require_labels=False)
            except medlens.MedlensError as err:
                result[label] = {"error": str(err), "s": round(time.perf_counter() - t0, 2)}
                continue
        wall = time.perf_counter() - t0
        m = re.search(r"(\d+) DICOM file\(s\) without an image left out", manifest.source)
        result[label] = {
            "s": round(wall, 2),
            "files": sum(1 for p in folder.rglob("*") if p.is_file()),
            "listed": len(manifest.df),
            "non_images_left_out": int(m.group(1)) if m else 0,
            "listed_but_unreadable": _unreadable(manifest.root, manifest.df["image"]),
            "source": manifest.source,
        }
    return result


def _unreadable(root: Path, images) -> dict[str, int]:
    """Listed files that the reader then refuses (a later command reports and skips them), by kind."""
    from medlens.errors import UnreadableImageError
    from medlens.io.images import decode_image

    kinds: Counter = Counter()
    for image in images:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                decode_image(root / image)
            except UnreadableImageError as err:
                kinds[_reason_group(err.reason)[:60]] += 1
    return dict(kinds)


def bench_badinput(skip: bool) -> dict:
    from badinput.cases import CASES

    result = {
        "cases": len(CASES),
        "xfail": sum(1 for c in CASES if c.xfail),
        "skip": sum(1 for c in CASES if c.skip),
    }
    if skip:
        return result
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/badinput", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    result["pytest_s"] = round(time.perf_counter() - t0, 1)
    result["pytest_rc"] = proc.returncode
    result["pytest_summary"] = (proc.stdout.strip().splitlines() or [""])[-1]
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "robustness19")
    parser.add_argument("--skip-pytest", action="store_true", help="do not time pytest tests/badinput")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # for the children (train, pytest); see the docstring
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, fn in (
        ("dicom_corpus", bench_corpus),
        ("predict_ood", lambda: bench_predict(args.out)),
        ("ingest", lambda: bench_ingest(args.out)),
        ("badinput", lambda: bench_badinput(args.skip_pytest)),
    ):
        t0 = time.perf_counter()
        results[name] = fn()
        results[name]["section_s"] = round(time.perf_counter() - t0, 1)
        print(f"== {name}\n{json.dumps(results[name], indent=1, default=str)}", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    corpus = results["dicom_corpus"]
    bad = len(corpus["misread"]) + len(corpus["internal"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
