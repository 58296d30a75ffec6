"""Classification: class folders in, cross-entropy (optionally class-weighted) with accuracy and macro-F1
while training, class probabilities out.

Evaluation is the ``classification`` evaluator of :mod:`medlens.evaluation.cls_evaluate` (accuracy, F1, AUC
with bootstrap intervals, calibration and their figures come from the evaluation layer above this one).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medlens.data.balance import class_weights
from medlens.data.cache import resize_image
from medlens.data.manifest import Manifest
from medlens.data.prepared import channel_stats, check_labels, check_readable_classes, prepare
from medlens.data.spec import PreprocessingSpec
from medlens.data.splits import carve_validation, stratified_subset
from medlens.errors import MedlensError
from medlens.io.failures import read_guarded
from medlens.io.images import decode_image
from medlens.models.checkpoint import LoadedModel
from medlens.models.run_files import operating_point_problem
from medlens.tasks.base import Task, normalize
from medlens.tasks.registry import register_task


@register_task("classification")
class ClassificationTask(Task):
    """Single-label classification: data, loop hooks, probabilities out (the defaults of :class:`Task`)."""

    name = "classification"
    monitor = "val_accuracy"
    model_option_keys = ("freeze_backbone", "head", "dropout", "weights", "pretrained")
    needs_labels = True
    evaluator = "classification"
    explainer = "classification"
    prediction_columns = ("prediction", "confidence", "probabilities")

    def __init__(
        self,
        class_names: list[str] = (),
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
    ):
        self.class_names = list(class_names)
        self.class_weights = (
            None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        )
        self.label_smoothing = label_smoothing

    # -- whole-path hooks ------------------------------------------------------------------------------
    def prepare(self, source, cfg, info, progress: bool, fix=None):
        """Ingest, carve a stratified validation split, audit-fix, subset, decode once; the spec."""
        manifest = self.resolve(source)
        check_labels(manifest)
        manifest = carve_validation(manifest, cfg.val_fraction, seed=cfg.seed)
        audit_changes: list[dict] = []
        if cfg.audit_fix and fix is not None:  # after carving: duplicates straddling train/val move together
            manifest, audit_changes = fix(manifest, progress)
        if cfg.fraction < 1:
            manifest = stratified_subset(manifest, cfg.fraction, seed=cfg.seed)
        classes = check_labels(manifest.subset("train"))
        size = cfg.image_size or info.default_size
        channels = cfg.channels or info.channels or 1
        if info.channels and channels != info.channels:
            raise MedlensError(
                f"model {cfg.model} needs {info.channels}-channel input, got --channels {channels}"
            )
        data = prepare(manifest, classes, size, channels, workers=cfg.workers, progress=progress)
        check_readable_classes(data)
        if len(data.indices("train")) == 0 or len(data.indices("val")) == 0:
            raise MedlensError(
                "training needs readable images in both the train and val splits; "
                f"got {len(data.indices('train'))} train and {len(data.indices('val'))} val"
            )
        if info.mean is not None:
            mean, std = info.mean, info.std
        else:
            mean, std = channel_stats(data.images[data.indices("train")])
        if cfg.intensity == "volume":
            raise MedlensError(
                "--intensity volume applies to 3D segmentation; for images use image or dataset"
            )
        spec = PreprocessingSpec(
            image_size=size,
            channels=channels,
            mean=tuple(mean),
            std=tuple(std),
            class_names=tuple(classes),
            intensity=cfg.intensity or "dataset",
        )
        return data, spec, audit_changes

    def check_evaluation_manifest(self, manifest: Manifest) -> None:
        if not manifest.has_labels:
            raise MedlensError(
                f"{manifest.source or manifest.root} has no labels; use `medlens predict` instead"
            )

    def summary_model(self, num_classes: int, head: str, freeze_backbone: bool) -> tuple[int, dict[str, Any]]:
        return num_classes, {"head": head, "freeze_backbone": freeze_backbone}

    def make_loop_task(self, cfg, data, spec: PreprocessingSpec) -> ClassificationTask:
        """Class names from the data, class weights from the train split when ``class_weights: auto``."""
        weights = None
        if cfg.class_weights == "auto":
            train_labels = data.manifest.df["label"].to_numpy()[data.indices("train")]
            weights = list(class_weights(train_labels, data.classes).values())
        return ClassificationTask(data.classes, weights, cfg.label_smoothing)

    def write_prediction(self, loaded, path: Path, out: Path) -> dict[str, Any]:
        """``{"prediction", "confidence", "probabilities"}`` of one image (nothing written); calibrated
        probabilities and the run's operating point when set (then also ``calibrated`` / ``threshold``)."""
        spec = loaded.spec
        decoded = read_guarded(path, decode_image, str(path))
        image = read_guarded(path, resize_image, decoded.array, spec.image_size, spec.channels)
        probs = predict_probs(loaded, image[None])
        best = int(decide(probs, list(spec.class_names), loaded.operating_point)[0])
        record = {
            "prediction": spec.class_names[best],
            "confidence": float(probs[0, best]),
            "probabilities": {c: float(p) for c, p in zip(spec.class_names, probs[0])},
            "calibrated": loaded.calibration is not None,
        }
        if loaded.operating_point is not None:
            record["threshold"] = {k: loaded.operating_point[k] for k in ("class", "threshold")}
        if decoded.notes:  # e.g. frame 1 of a multi-frame DICOM: the user should know
            record["read_notes"] = list(decoded.notes)
        return record

    def prediction_row(self, record: dict[str, Any]) -> list[str]:
        probs = ", ".join(f"{k} {v:.3f}" for k, v in record["probabilities"].items())
        return [record["prediction"], f"{record['confidence']:.3f}", probs]

    def triage_score(self, record: dict[str, Any], urgent: dict[str, float] | None) -> tuple[float, str]:
        """Σ weight × calibrated probability over the urgent classes (capped at 1); detail names the most
        probable urgent class, e.g. "p(glioma) 0.93"."""
        probs = record.get("probabilities") or {}
        urgent = urgent if urgent is not None else default_urgent(list(probs))
        unknown = sorted(set(urgent) - set(probs))
        if unknown and probs:
            raise MedlensError(
                f"urgent class(es) {unknown} are not classes of this model: {', '.join(probs)}"
            )
        terms = {c: float(w) * float(probs.get(c, 0.0)) for c, w in urgent.items()}
        if not terms:
            return 0.0, "no urgent classes configured"
        top = max(urgent, key=lambda c: float(probs.get(c, 0.0)))
        return min(1.0, sum(terms.values())), f"p({top}) {float(probs.get(top, 0.0)):.2f}"

    # -- loop hooks -----------------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing)

    def epoch_metrics(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Validation metrics over a whole epoch (unweighted loss, accuracy, macro-F1)."""
        pred = logits.argmax(1).cpu().numpy()
        y = target.cpu().numpy()
        k = len(self.class_names)
        cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        precision = np.divide(tp, cm.sum(0), out=np.zeros(k), where=cm.sum(0) > 0)
        recall = np.divide(tp, cm.sum(1), out=np.zeros(k), where=cm.sum(1) > 0)
        f1 = np.divide(
            2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0
        )
        present = cm.sum(1) > 0
        return {
            "val_loss": float(F.cross_entropy(logits.float(), target)),
            "val_accuracy": float(tp.sum() / max(1, cm.sum())),
            "val_macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        }


#: Class names that mean "nothing found" (case-insensitive, spaces/underscores/hyphens ignored).
NEGATIVE_NAMES = {
    "normal",
    "notumor",
    "notumour",
    "negative",
    "nofinding",
    "healthy",
    "benign",
    "none",
    "background",
}


def default_urgent(class_names: list[str]) -> dict[str, float]:
    """Every class whose name does not mean "nothing found", with weight 1 (at least one class)."""
    urgent = {c: 1.0 for c in class_names if re.sub(r"[\s_-]+", "", c.lower()) not in NEGATIVE_NAMES}
    return urgent or {class_names[-1]: 1.0}


@torch.no_grad()
def predict_logits(loaded: LoadedModel, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """The network's raw scores (N, K) for uint8 images (N, C, S, S) preprocessed like training."""
    model = loaded.model.eval()
    if not images.flags.writeable:  # decoded straight from Pillow: torch.from_numpy wants a writable array
        images = images.copy()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(torch.from_numpy(images[start : start + batch_size]), loaded.spec)
        out.append(model(x).float().numpy())
    k = len(loaded.spec.class_names)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)


def softmax(logits: np.ndarray, temperature: float | None = None) -> np.ndarray:
    """Class probabilities from scores, divided by ``temperature`` first when given (temperature scaling).

    Raises:
        MedlensError: a temperature that is not a finite positive number (it would flip or erase every
            probability rather than rescale it).
    """
    if temperature is not None and not (np.isfinite(temperature) and temperature > 0):
        raise MedlensError(f"the temperature must be a finite positive number, got {temperature!r}")
    z = np.asarray(logits, dtype=np.float64) / (temperature or 1.0)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_probs(
    loaded: LoadedModel, images: np.ndarray, batch_size: int = 128, calibrated: bool = True
) -> np.ndarray:
    """Class probabilities (N, K) for uint8 images (N, C, S, S); temperature-scaled when the run was
    calibrated (``medlens calibrate``) unless ``calibrated=False``."""
    return softmax(predict_logits(loaded, images, batch_size), loaded.temperature if calibrated else None)


def decide(probs: np.ndarray, class_names: list[str], operating_point: dict | None) -> np.ndarray:
    """Predicted class index per row: argmax, or, with an operating point ``{"class", "threshold"}``, that
    class whenever its probability is ≥ the threshold and the most probable other class otherwise.

    Raises:
        MedlensError: an operating point for a class the model does not have, or a threshold outside (0, 1)
            (never silently ignored).
    """
    probs = np.asarray(probs)
    if operating_point is None:
        return probs.argmax(axis=1)
    problem = operating_point_problem(operating_point, list(class_names))
    if problem:
        raise MedlensError(f"unusable operating point: {problem}")
    c = class_names.index(operating_point["class"])
    others = probs.copy()
    others[:, c] = -np.inf
    return np.where(probs[:, c] >= float(operating_point["threshold"]), c, others.argmax(axis=1))
