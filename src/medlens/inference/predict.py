"""Inference with a trained run (`medlens predict`): class probabilities, masks or boxes, by its task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medlens.errors import MedlensError
from medlens.io.guard import accepts_image_limit
from medlens.models.checkpoint import load_model
from medlens.tasks.classification import predict_probs


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
        gate: a classification run that decides per 2D image whether to segment it (brief 4's two stages).
        negative_class: the gate's "nothing to segment" class (default: found by name, e.g. notumor).
        gate_threshold: segment when 1 - p(negative) reaches this.
    """
    from medlens.data.cache import load_image
    from medlens.errors import UnreadableImageError

    if not files:
        raise MedlensError("no image files given; pass one or more paths to images")
    loaded = load_model(_run_model_path(run_dir))
    if loaded.spec.task != "classification":
        return _predict_localisation(
            loaded, Path(run_dir), files, out_dir, gate, negative_class, gate_threshold
        )
    if gate is not None:
        raise MedlensError(f"--gate needs a segmentation run to pass positives to; {run_dir} is a classifier")
    spec, results = loaded.spec, []
    for f in files:
        try:
            arr = load_image(str(f), spec.image_size, spec.channels)
        except UnreadableImageError as err:
            results.append({"path": str(f), "error": err.reason})
            continue
        probs = predict_probs(loaded, arr[None])[0]
        best = int(probs.argmax())
        results.append(
            {
                "path": str(f),
                "prediction": spec.class_names[best],
                "confidence": float(probs[best]),
                "probabilities": {c: float(p) for c, p in zip(spec.class_names, probs)},
            }
        )
    return results


def _predict_localisation(loaded, run_dir: Path, files, out_dir, gate, negative_class, gate_threshold):
    out = Path(out_dir) if out_dir is not None else run_dir / "predictions"
    if loaded.spec.task == "detection":
        if gate is not None:
            raise MedlensError("--gate passes positives to a segmentation run, not to a detection run")
        from medlens.tasks.detection import write_predictions

        return write_predictions(loaded, files, out)
    from medlens.tasks.segmentation import write_predictions

    gate_obj = None
    if gate is not None:
        from medlens.tasks.gate import load_gate

        gate_obj = load_gate(gate, negative_class, gate_threshold)
    return write_predictions(loaded, files, out, gate=gate_obj)


def _run_model_path(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise MedlensError(
            f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`"
        )
    return run_dir
