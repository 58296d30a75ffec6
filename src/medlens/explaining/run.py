"""`medlens explain RUN INPUTS... -o DIR`: the reason behind each result, written as ``<stem>_explain.png``
per input and ``explain.json`` (schema ``medlens.explain/1``) for all of them.

The run's task picks the explainer (its ``explainer`` name or its ``explain`` hook): Grad-CAM and similar
cases for classifiers, mask + uncertainty for segmenters, box + box-head Grad-CAM for detectors; every 2D run
also gets the out-of-distribution score of its embedding index (built once, stored in the run).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medlens.data.run_data import run_data_folder
from medlens.errors import MedlensError
from medlens.explaining import classify, localise  # noqa: F401  (register the explainers)
from medlens.explaining.cam import METHODS
from medlens.explaining.classify import drop_private
from medlens.explaining.embedding import load_or_build_index
from medlens.explaining.explainers import ExplainContext, explainer_of
from medlens.explaining.faithful import localisation as score_localisation
from medlens.explaining.inputs import expand_inputs
from medlens.io.guard import accepts_image_limit
from medlens.models.checkpoint import load_model
from medlens.tasks.registry import get_task
from medlens.utils.files import check_output_path, mark_output, write_json

SCHEMA = "medlens.explain/1"


@accepts_image_limit
def explain(
    run_dir: str | Path,
    inputs: list[str | Path],
    out: str | Path | None = None,
    *,
    method: str = "gradcam",
    target: str | None = None,
    k: int = 5,
    index: bool = True,
    write_png: bool = True,
    localisation: str | Path | None = None,
    n_bootstrap: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Explain the run's answer for each input and write the pictures and ``explain.json``.

    Args:
        run_dir: a run directory from ``medlens train``.
        inputs: image files, folders (searched recursively), DICOM files or series folders, NIfTI volumes, or
            a manifest CSV.
        out: output folder (default ``RUN/explanations``).
        method: classification: ``gradcam`` (default), ``gradcampp`` or ``occlusion``; with ``localisation``
            a comma-separated list scores each.
        target: classification: explain this class instead of the predicted one.
        k: similar training cases per input.
        index: use (and build on first use) the run's embedding index for similar cases and OOD.
        write_png: draw ``<stem>_explain.png`` per input.
        localisation: a segmentation source with masks (classification runs): score the maps against the
            lesions of the run's validation patients (``"localisation"`` in explain.json); ``inputs`` may
            then be empty.
        n_bootstrap: resamples of the localisation intervals (over patients).
        progress: show progress bars while the index is built.

    Returns:
        The explain.json dict: ``{"schema", "run", "task", "calibrated", "index", "cases": [{"input", ...}]}``
        where an unreadable input's case is ``{"input", "error"}``.
    """
    methods = [m.strip() for m in str(method).split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods or (len(methods) > 1 and localisation is None):
        raise MedlensError(
            f"--method must be one of {', '.join(METHODS)} (several, comma-separated, only with "
            f"--localisation), got {method!r}"
        )
    if k < 1:
        raise MedlensError(f"-k must be at least 1, got {k}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedlensError(
            f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`"
        )
    loaded = load_model(run_dir)
    task = get_task(loaded.spec.task)
    if methods != ["gradcam"] and task.name != "classification":
        raise MedlensError(
            f"--method {method} applies to classification runs; {run_dir} is a {task.name} run"
        )
    studies = expand_inputs(list(inputs), loaded.spec.spatial_dims) if inputs or localisation is None else []
    out = Path(out) if out is not None else run_dir / "explanations"
    sources = [*inputs, *filter(None, [run_data_folder(run_dir)])]  # never among the run's training images
    check_output_path(out, sources=sources, marker="explanations", run=run_dir, what="explanations folder")
    result = explain_studies(
        loaded,
        run_dir,
        studies,
        out,
        method=methods[0],
        target=target,
        k=k,
        index=index,
        write_png=write_png,
        progress=progress,
    )
    if localisation is not None:
        cases = result.pop("cases")
        result["localisation"] = score_localisation(
            loaded,
            run_dir,
            localisation,
            methods=methods,
            target=target,
            n_bootstrap=n_bootstrap,
            progress=progress,
        )
        result["cases"] = cases
    write_json(out / "explain.json", result)
    mark_output(out, "explanations")
    return result


def explain_studies(
    loaded,
    run_dir: Path,
    studies: list,
    out: Path,
    *,
    method: str = "gradcam",
    target: str | None = None,
    k: int = 5,
    index: bool = True,
    write_png: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Explain already expanded studies with a loaded model (what ``explain`` and ``triage`` share); the
    explain.json dict (not written)."""
    task = get_task(loaded.spec.task)
    out.mkdir(parents=True, exist_ok=True)
    idx, index_note = None, None
    if index and loaded.spec.spatial_dims == 2 and studies:
        try:
            idx = load_or_build_index(run_dir, loaded, progress=progress)
            index_note = idx.note
        except MedlensError as err:
            index_note = f"no similar cases or OOD score: {err}"
    elif index:
        index_note = "no similar cases or OOD score: the embedding index covers 2D runs"
    ctx = ExplainContext(out=out, method=method, target=target, k=k, index=idx, write_png=write_png)
    t0 = time.perf_counter()
    records = explainer_of(task)(loaded, studies, ctx) if studies else []
    return {
        "schema": SCHEMA,
        "run": str(run_dir),
        "task": task.name,
        "model": loaded.name,
        "calibrated": (
            {key: loaded.calibration[key] for key in ("method", "T", "fit_on")}
            if loaded.calibration
            else None
        ),
        "index": None
        if idx is None
        else {"k": idx.k, "training_cases": len(idx.embeddings), "ood_threshold": round(idx.threshold, 6)},
        "index_note": index_note,
        "seconds_per_input": round((time.perf_counter() - t0) / max(1, len(studies)), 4),
        "cases": drop_private(records),
    }
