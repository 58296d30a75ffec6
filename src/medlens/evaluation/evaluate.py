"""`medlens evaluate`: run a trained model on a split or a whole source and write summary.json + report.

The run's task picks nothing here by name: its hooks resolve and check the source, its evaluator (or its
own ``evaluate`` hook, see :mod:`medlens.evaluation.evaluators`) predicts and scores the cases, and
:func:`medlens.evaluation.writer.write_evaluation` writes summary.json, predictions.csv and report.html.
summary.json is the single source of truth: report.html, `compare`, the UI and the benchmarks read it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.evaluation import cls_evaluate, det_evaluate, seg_evaluate  # noqa: F401  (register evaluators)
from medlens.evaluation.evaluators import evaluator_of
from medlens.evaluation.writer import write_evaluation
from medlens.io.guard import accepts_image_limit
from medlens.models.checkpoint import load_model
from medlens.tasks.base import EvalContext
from medlens.tasks.registry import get_task


@accepts_image_limit
def evaluate(
    run_dir: str | Path,
    data: Manifest | str | Path | None = None,
    *,
    split: str | None = None,
    out: str | Path | None = None,
    n_bootstrap: int = 1000,
    progress: bool = True,
    run_name: str | None = None,
    prepared=None,
    gate=None,
) -> dict[str, Any]:
    """Evaluate the run's model and write summary.json, predictions.csv, figures and report.html.

    The run's task decides what is measured: classification (accuracy, F1, AUC, calibration,
    :mod:`~medlens.evaluation.cls_evaluate`), segmentation (:mod:`~medlens.evaluation.seg_evaluate`),
    detection (:mod:`~medlens.evaluation.det_evaluate`) or a registered task's own ``evaluate`` hook.

    Args:
        run_dir: a run directory written by ``medlens train``.
        data: another labelled source to evaluate on (default: the run's own manifest).
        split: which split to evaluate; default "test" if the data has one, else "val" for the run's own
            manifest, else all of ``data``.
        out: output folder (default: the run directory, or ``RUN_DIR/eval-<data>-<split>`` with ``data``).
        n_bootstrap: bootstrap resamples for the 95 % confidence intervals.
        progress: show progress bars.
        run_name: the run's name in the summary (default: ``run_dir``).
        prepared: the data training just cached (reused instead of decoding again).
        gate: for a 2D segmentation run, a classification run directory (or a loaded
            :class:`~medlens.tasks.gate.Gate`): slices it calls negative get an empty mask, and the summary
            gains a ``pipeline`` section with false-positive slice counts.

    Returns:
        The summary dict (also written as summary.json).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedlensError(
            f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`"
        )
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise MedlensError(f"-o {out} is a file, not a folder; give a folder path for the evaluation outputs")
    loaded = load_model(run_dir)
    task = get_task(loaded.spec.task)
    own = data is None
    if own:
        manifest = prepared.manifest if prepared is not None else Manifest.load(run_dir / "manifest.csv")
    else:
        manifest = task.resolve(data)
    split = split or ("test" if "test" in manifest.splits else "val" if own else None)
    if split is not None and split not in manifest.splits:
        raise MedlensError(
            f"split {split!r} not found in {manifest.source or manifest.root}; "
            f"it has {manifest.splits or ['no split column']}"
        )
    task.check_evaluation_manifest(manifest)
    ctx = EvalContext(
        run=run_name or str(run_dir),
        data=str(manifest.source or manifest.root),
        split=split or "all",
        n_bootstrap=n_bootstrap,
        run_dir=run_dir,
        out=Path(out) if out else (run_dir if own else run_dir / f"eval-{_slug(manifest)}-{split or 'all'}"),
        prepared=prepared if own else None,
        gate=gate,
        progress=progress,
    )
    sub = manifest.subset(split) if split else manifest
    return write_evaluation(task.name, evaluator_of(task)(loaded, sub, ctx), ctx)


def _slug(manifest: Manifest) -> str:
    name = Path(str(manifest.root)).name or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:40]
