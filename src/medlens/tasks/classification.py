"""Classification: cross-entropy (optionally class-weighted), accuracy and macro-F1 while training."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medlens.models.checkpoint import LoadedModel
from medlens.tasks.base import Task, normalize


class ClassificationTask(Task):
    """Hooks the shared loop calls for single-label classification."""

    name = "classification"

    def __init__(
        self, class_names: list[str], class_weights: list[float] | None = None, label_smoothing: float = 0.0
    ):
        self.class_names = list(class_names)
        self.class_weights = (
            None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        )
        self.label_smoothing = label_smoothing

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


@torch.no_grad()
def predict_probs(loaded: LoadedModel, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities (N, K) for uint8 images (N, C, S, S) preprocessed like training."""
    model = loaded.model.eval()
    if not images.flags.writeable:  # decoded straight from Pillow: torch.from_numpy wants a writable array
        images = images.copy()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(torch.from_numpy(images[start : start + batch_size]), loaded.spec)
        out.append(torch.softmax(model(x).float(), dim=1).numpy())
    k = len(loaded.spec.class_names)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)
