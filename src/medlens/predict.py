"""Inference with a trained run: probabilities for cached tensors, or for image files (`medlens predict`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.errors import MedlensError
from medlens.train.checkpoint import LoadedModel, load_model


@torch.no_grad()
def predict_probs(loaded: LoadedModel, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Class probabilities (N, K) for uint8 images (N, C, S, S) preprocessed like training."""
    from medlens.train.module import normalize

    model = loaded.model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(torch.from_numpy(images[start:start + batch_size]), loaded.spec)
        out.append(torch.softmax(model(x).float(), dim=1).numpy())
    k = len(loaded.spec.class_names)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)


def predict(run_dir: str | Path, files: list[str | Path]) -> list[dict[str, Any]]:
    """Predict each image file: {"path", "prediction", "confidence", "probabilities"} or {"path", "error"}.

    An unreadable file yields an entry with "error" instead of failing the whole call.
    """
    from medlens.data.cache import load_image
    from medlens.errors import UnreadableImageError

    if not files:
        raise MedlensError("no image files given; pass one or more paths to images")
    loaded = load_model(_run_model_path(run_dir))
    spec, results = loaded.spec, []
    for f in files:
        try:
            arr = load_image(str(f), spec.image_size, spec.channels)
        except UnreadableImageError as err:
            results.append({"path": str(f), "error": err.reason})
            continue
        probs = predict_probs(loaded, arr[None])[0]
        best = int(probs.argmax())
        results.append({"path": str(f), "prediction": spec.class_names[best], "confidence": float(probs[best]),
                        "probabilities": {c: float(p) for c, p in zip(spec.class_names, probs)}})
    return results


def _run_model_path(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise MedlensError(f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`")
    return run_dir
