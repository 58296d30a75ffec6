"""`medlens predict` as users call it: inputs as explain takes them (files, folders, DICOM series, a manifest
CSV), the run's task predicting each one, and the run's out-of-distribution flag on each result.

The layers decide where this lives: prediction (:mod:`medlens.inference`) sits below the embedding index of
:mod:`medlens.explaining` (which also serves explain, triage and the web app), so the two are composed here,
one layer above both, and nothing is copied: the inputs are expanded by explain's
:func:`~medlens.explaining.inputs.expand_inputs` and the flag is explain's
:meth:`~medlens.explaining.embedding.EmbeddingIndex.ood` on the same embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medlens.data.cache import load_image
from medlens.errors import MedlensError
from medlens.explaining.embedding import embed, load_or_build_index
from medlens.explaining.inputs import expand_inputs
from medlens.inference.predict import check_predictions_out, predict_loaded, run_model_path
from medlens.io.failures import read_guarded
from medlens.io.guard import accepts_image_limit
from medlens.models.checkpoint import load_model

BATCH = 64


@accepts_image_limit
def predict(
    run_dir: str | Path,
    files: list[str | Path],
    *,
    out_dir: str | Path | None = None,
    gate: str | Path | None = None,
    negative_class: str | None = None,
    gate_threshold: float = 0.5,
    ood: bool = True,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Predict every input with the run's model: one record per image (``{"path", "error"}`` if unreadable).

    Records are those of :func:`medlens.inference.predict.predict` (class probabilities, or mask / box
    files), plus ``ood`` (``{"score", "flag", "percentile", "threshold", "reason"}``, as in explain.json)
    for 2D runs whose embedding index exists or can be built (the first use builds it from the run's
    training images), and ``read_notes`` where the reader decided something (frame 1 of a multi-frame file).
    When the index cannot be had, each readable record says why in ``ood_note``.

    Args:
        run_dir: a run directory from ``medlens train``.
        files: image files, folders (searched recursively), DICOM files or series folders, NIfTI volumes, or
            a manifest CSV (as ``medlens explain`` takes them).
        out_dir: where masks and overlays go (segmentation and detection; default ``RUN_DIR/predictions``).
        gate: a classification run that decides per 2D image whether to segment it.
        negative_class: the gate's "nothing to segment" class.
        gate_threshold: segment when 1 - p(negative) reaches this.
        ood: add the out-of-distribution flag (False: skip the index).
        progress: progress bars while the index is built.
    """
    if not files:
        raise MedlensError("no image files given; pass one or more paths to images or folders")
    if out_dir is not None:  # before any work
        check_predictions_out(out_dir, run_dir, files)
    loaded = load_model(run_model_path(run_dir))
    studies = expand_inputs(list(files), loaded.spec.spatial_dims)
    records = predict_loaded(
        loaded,
        run_dir,
        [s.path for s in studies],
        out_dir=out_dir,
        gate=gate,
        negative_class=negative_class,
        gate_threshold=gate_threshold,
    )
    for study, record in zip(studies, records, strict=True):
        record["path"] = study.input  # as given, or as found under a given folder
    if ood:
        add_ood(loaded, run_dir, studies, records, progress=progress)
    return records


def add_ood(
    loaded, run_dir: str | Path, studies: list, records: list[dict], *, progress: bool = False
) -> None:
    """Give each readable record the run's out-of-distribution flag (``ood``), or ``ood_note`` saying why
    there is none (a 3D run, or an index that cannot be built)."""
    readable = [i for i, r in enumerate(records) if "error" not in r]
    if not readable:
        return
    if loaded.spec.spatial_dims != 2:
        return _note(records, readable, "the out-of-distribution check covers 2D runs")
    try:
        index = load_or_build_index(Path(run_dir), loaded, progress=progress)
    except MedlensError as err:
        return _note(records, readable, f"no out-of-distribution check: {err}")
    spec = loaded.spec
    for start in range(0, len(readable), BATCH):
        chunk, images = [], []
        for i in readable[start : start + BATCH]:
            try:  # read as the prediction read it (the same decoder, size and channels)
                images.append(
                    read_guarded(studies[i].path, load_image, studies[i].path, spec.image_size, spec.channels)
                )
                chunk.append(i)
            except MedlensError as err:
                records[i]["ood_note"] = f"no out-of-distribution check: {err}"
        if chunk:
            for i, flag in zip(chunk, index.ood(embed(loaded, np.stack(images))), strict=True):
                records[i]["ood"] = flag


def _note(records: list[dict], rows: list[int], text: str) -> None:
    for i in rows:
        records[i]["ood_note"] = text
