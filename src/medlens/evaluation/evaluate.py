"""`medlens evaluate`: run a trained model on a split or a whole source and write summary.json + report.

The run's task picks nothing here by name: its hooks resolve and check the source, its evaluator (or its
own ``evaluate`` hook, see :mod:`medlens.evaluation.evaluators`) predicts and scores the cases, and
:func:`medlens.evaluation.writer.write_evaluation` writes summary.json, predictions.csv and report.html.
summary.json is the single source of truth: report.html, `compare`, the UI and the benchmarks read it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from medlens.data.manifest import Manifest
from medlens.data.run_data import load_run_manifest, run_data_folder
from medlens.errors import MedlensError
from medlens.evaluation import cls_evaluate, det_evaluate, seg_evaluate  # noqa: F401  (register evaluators)
from medlens.evaluation.clinical import ClinicalOptions
from medlens.evaluation.evaluators import evaluator_of
from medlens.evaluation.leakage import deduplicated_metrics, near_duplicate_flags
from medlens.evaluation.operating_points import positive_classes
from medlens.evaluation.writer import write_evaluation
from medlens.io.guard import accepts_image_limit
from medlens.models.checkpoint import OPERATING_POINT_FILE, load_model
from medlens.models.run_files import read_run_json, read_run_yaml
from medlens.tasks.base import EvalContext
from medlens.tasks.registry import get_task
from medlens.utils.files import check_output_path, write_json


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
    positive: str | None = None,
    threshold: float | None = None,
    cohorts: str | None = None,
    metadata: str | Path | None = None,
    min_cell: int = 10,
    reference: str | None = None,
    readers: str | Path | None = None,
    patient_agg: str = "max",
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
        positive: classification: the positive class of the operating points and reader sensitivities
            (default: the second class of a binary task; every class one-vs-rest of a multiclass one).
        threshold: classification: store this operating point for ``positive`` in the run
            (operating_point.json); predict and predictions.csv then decide by it.
        cohorts: ``COL[,COL]`` of the manifest or ``metadata`` (numeric columns binned, e.g.
            ``age:<40,40-60,>60``, else at tertiles): per-cohort metrics and a fairness audit.
        metadata: a CSV joined on patient_id (``patient_id`` or ``Patient`` column).
        min_cell: cohorts with fewer patients are censored.
        reference: the fairness reference group (default: each column's largest).
        readers: classification: a CSV of (case_id, reader, label or probability): readers vs model.
        patient_agg: classification with several cases per patient: ``max`` or ``mean`` of the cases'
            probabilities makes the patient's (patient-level metrics).

    Returns:
        The summary dict (also written as summary.json), plus ``output_dir``: the folder it was written to.
    """
    run_dir = Path(run_dir)
    if out is not None:  # before any work: never another run's folder, a dataset or a source
        check_evaluation_out(out, run_dir, data)
    if not run_dir.is_dir():
        raise MedlensError(
            f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`"
        )
    clinical = ClinicalOptions(
        positive=positive,
        threshold=threshold,
        cohorts=cohorts,
        metadata=Path(metadata) if metadata else None,
        min_cell=min_cell,
        reference=reference,
        readers=Path(readers) if readers else None,
        patient_agg=patient_agg,
    )
    clinical.check()
    loaded = load_model(run_dir, operating_point=threshold is None)  # --threshold replaces the stored one
    # the report reads these after inference: a damaged one is refused before any work
    read_run_json(run_dir / "train.json")
    read_run_yaml(run_dir / "config.yaml")
    task = get_task(loaded.spec.task)
    if loaded.spec.task != "classification":
        for name, value in (("--threshold", threshold), ("--readers", readers), ("--positive", positive)):
            if value is not None:
                raise MedlensError(f"{name} applies to classification runs; {run_dir} is a {task.name} run")
    elif threshold is not None:
        loaded.operating_point = set_operating_point(
            run_dir, list(loaded.spec.class_names), threshold, positive
        )
    own = data is None
    if own:
        # a copied or moved run finds its images where it was trained (see load_run_manifest)
        manifest = prepared.manifest if prepared is not None else load_run_manifest(run_dir).manifest
    else:
        manifest = task.resolve(data)
    split = split or ("test" if "test" in manifest.splits else "val" if own else None)
    if own and split is not None and split not in manifest.splits and _refit(run_dir):
        raise MedlensError(
            f"{run_dir}'s model was refit on train + val (--final), so it has no held-out {split!r} split; "
            f"evaluate it on other held-out data with --data SRC, or the selection model with "
            f"`medlens evaluate {run_dir / 'selection'}`"
        )
    if split is not None and split not in manifest.splits:
        raise MedlensError(
            f"split {split!r} not found in {manifest.source or manifest.root}; "
            f"it has {manifest.splits or ['no split column']}"
        )
    task.check_evaluation_manifest(manifest)
    clinical.check_data(manifest.df, list(loaded.spec.class_names) if task.name == "classification" else None)
    out = Path(out) if out else (run_dir if own else run_dir / f"eval-{_slug(manifest)}-{split or 'all'}")
    check_evaluation_out(out, run_dir, data)
    ctx = EvalContext(
        run=run_name or str(run_dir),
        data=str(manifest.source or manifest.root),
        split=split or "all",
        n_bootstrap=n_bootstrap,
        run_dir=run_dir,
        out=out,
        prepared=prepared if own else None,
        gate=gate,
        progress=progress,
        clinical=clinical,
    )
    sub = manifest.subset(split) if split else manifest
    evaluation = evaluator_of(task)(loaded, sub, ctx)
    if not own and loaded.spec.spatial_dims == 2:  # other data: also score it without copies of training
        run_data = load_run_manifest(run_dir)  # resolved even when the run was copied elsewhere
        flags, info = near_duplicate_flags(
            _case_paths(sub, evaluation.cases), run_data.manifest, progress=progress
        )
        evaluation.after["metrics_deduplicated"] = deduplicated_metrics(
            task.name,
            evaluation.cases,
            flags,
            info,
            class_names=list(loaded.spec.class_names) if task.name == "classification" else None,
            n_bootstrap=n_bootstrap,
            root_note=run_data.root_note,
        )
    summary = write_evaluation(task.name, evaluation, ctx)
    summary["output_dir"] = str(ctx.out)  # where it was written (returned only; not a summary.json key)
    return summary


def check_evaluation_out(out: str | Path, run_dir: Path, data: Any = None) -> Path:
    """Refuse, in one line, an evaluation folder that is a source, lies in one, or holds files medlens did
    not write for an evaluation (another run, a dataset); the run's own folder and its subfolders are fine."""
    sources = [data] if data is not None else []
    folder = run_data_folder(run_dir)  # the run's training images: an output there would become data
    sources += [folder] if folder is not None else []
    return check_output_path(
        out, sources=sources, what="evaluation folder", marker="evaluation", run=run_dir, may_be_run=True
    )


def _case_paths(manifest: Manifest, cases: list[dict[str, Any]]) -> list[str]:
    """The image path of each evaluated case (cases carry their case_id; unreadable ones were skipped)."""
    by_id = dict(zip(manifest.df["case_id"].astype(str), manifest.paths()))
    return [by_id.get(str(c.get("case_id")), "") for c in cases]


def set_operating_point(
    run_dir: Path, classes: list[str], threshold: float, positive: str | None
) -> dict[str, Any]:
    """Store ``{"class", "threshold"}`` in RUN/operating_point.json (predict then decides by it)."""
    chosen = positive_classes(classes, positive)
    if len(chosen) != 1:
        raise MedlensError(
            f"--threshold on a {len(classes)}-class run needs --positive CLASS (one of {', '.join(classes)})"
        )
    point = {
        "class": classes[chosen[0]],
        "threshold": float(threshold),
        "set": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(run_dir / OPERATING_POINT_FILE, point)
    return point


def _refit(run_dir: Path) -> bool:
    """Whether the run's model was refit on train + val (``--final``)."""
    return bool(read_run_json(run_dir / "train.json").get("final"))


def _slug(manifest: Manifest) -> str:
    name = Path(str(manifest.root)).name or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:40]
