"""Inference with a trained run (`medlens predict`): the run's task writes its predictions (class
probabilities, masks or boxes) through its ``write_predictions`` hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medlens.data.run_data import run_data_folder
from medlens.errors import MedlensError
from medlens.io.guard import accepts_image_limit
from medlens.models.checkpoint import load_model
from medlens.tasks.registry import get_task
from medlens.utils.files import check_output_path


@accepts_image_limit
def predict(
    run_dir: str | Path,
    files: list[str | Path],
    *,
    out_dir: str | Path | None = None,
    gate: str | Path | None = None,
    negative_class: str | None = None,
    gate_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Predict each file with the run's model; an unreadable image yields ``{"path", "error"}``.

    Classification returns ``{"path", "prediction", "confidence", "probabilities"}`` per image. Segmentation
    writes masks (PNG for 2D, NIfTI with the input's affine for 3D) and overlay PNGs into ``out_dir``
    (default ``RUN_DIR/predictions``) and returns their paths; detection writes the box drawn on the image
    and returns ``{"path", "box", "overlay"}``.

    Args:
        run_dir: a run directory from ``medlens train``.
        files: images, NIfTI volumes or DICOM series folders.
        out_dir: where masks and overlays go (segmentation and detection).
        gate: a classification run that decides per 2D image whether to segment it (a two-stage pipeline).
        negative_class: the gate's "nothing to segment" class (default: found by name, e.g. notumor).
        gate_threshold: segment when 1 - p(negative) reaches this.
    """
    if not files:
        raise MedlensError("no image files given; pass one or more paths to images")
    if out_dir is not None:  # before any work
        check_predictions_out(out_dir, run_dir, files)
    loaded = load_model(run_model_path(run_dir))
    return predict_loaded(
        loaded,
        run_dir,
        files,
        out_dir=out_dir,
        gate=gate,
        negative_class=negative_class,
        gate_threshold=gate_threshold,
    )


def predict_loaded(
    loaded,
    run_dir: str | Path,
    files: list[str | Path],
    *,
    out_dir: str | Path | None = None,
    gate: str | Path | None = None,
    negative_class: str | None = None,
    gate_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """:func:`predict` with the run's model already loaded (one record per file, in order)."""
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "predictions"
    check_predictions_out(out, run_dir, files)
    # no marker here: a predictions folder holds only <stem>_mask/_overlay/_box files and is known by them
    return get_task(loaded.spec.task).write_predictions(
        loaded, files, out, gate=gate, negative_class=negative_class, gate_threshold=gate_threshold
    )


def check_predictions_out(out: str | Path, run_dir: str | Path, files: list) -> Path:
    """Refuse, in one line, a predictions folder that is another run, a source, lies among the run's
    training images, or holds files medlens did not write for predictions."""
    sources = [*files, *filter(None, [run_data_folder(run_dir)])]
    return check_output_path(
        out, sources=sources, marker="predictions", run=run_dir, what="predictions folder"
    )


def run_model_path(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise MedlensError(
            f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`"
        )
    return run_dir
