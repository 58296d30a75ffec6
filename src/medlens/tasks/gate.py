"""The two-stage pipeline's first stage: a classifier decides "something to segment here?" per 2D image.

A classifier (e.g. a ResNet) says tumour / no tumour, and only positive slices go to the segmentation
network. The gate is any classification run; one of its classes is the negative one (found by name, or
given), and a slice is positive when the probability of all other classes together reaches ``threshold``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medlens.data.cache import resize_image
from medlens.errors import MedlensError
from medlens.models.checkpoint import load_model
from medlens.tasks.classification import predict_probs

NEGATIVE_NAMES = (
    "notumor",
    "notumour",
    "normal",
    "negative",
    "healthy",
    "none",
    "no",
    "0",
    "background",
    "absent",
    "nofinding",
)


@dataclass
class Gate:
    """A loaded classification run used as a tumour / no-tumour gate.

    Attributes:
        loaded: the classifier (:class:`~medlens.models.checkpoint.LoadedModel`).
        negative: the class meaning "nothing to segment".
        threshold: positive when 1 - p(negative) >= threshold.
        run: the run directory, for the summary.
    """

    loaded: object
    negative: str
    threshold: float = 0.5
    run: str = ""

    def positive_probability(self, images: np.ndarray) -> np.ndarray:
        """P(positive) for uint8 images (N, C, S, S) cached at the gate's own size and channels."""
        probs = predict_probs(self.loaded, images)
        return 1.0 - probs[:, list(self.loaded.spec.class_names).index(self.negative)]

    def decide(self, image: np.ndarray) -> dict:
        """Gate one decoded image: ``{"tumour_probability", "segmented"}``."""
        spec = self.loaded.spec
        p = float(self.positive_probability(resize_image(image, spec.image_size, spec.channels)[None])[0])
        return {"tumour_probability": round(p, 6), "segmented": p >= self.threshold}

    def to_dict(self) -> dict:
        return {"gate_run": self.run, "negative_class": self.negative, "threshold": self.threshold}


def load_gate(run_dir: str | Path, negative_class: str | None = None, threshold: float = 0.5) -> Gate:
    """Load a classification run as a gate.

    Raises:
        MedlensError: the run is not a classifier, the negative class is unknown or cannot be guessed, or the
            threshold is outside (0, 1).
    """
    if not Path(run_dir).exists():
        raise MedlensError(f"gate run directory {run_dir} not found; train a classifier with `medlens train`")
    loaded = load_model(run_dir)
    if loaded.spec.task != "classification":
        raise MedlensError(
            f"--gate {run_dir} is a {loaded.spec.task} run; the gate must be a classifier "
            "(e.g. tumour / notumor slices)"
        )
    if not 0 < threshold < 1:
        raise MedlensError(f"--gate-threshold must be between 0 and 1, got {threshold}")
    names = list(loaded.spec.class_names)
    if negative_class is None:
        found = [c for c in names if re.sub(r"[^a-z0-9]", "", c.lower()) in NEGATIVE_NAMES]
        if len(found) != 1:
            raise MedlensError(
                f"cannot tell which class of gate {run_dir} means 'nothing to segment' among "
                f"{names}; pass --negative-class NAME"
            )
        negative_class = found[0]
    if negative_class not in names:
        raise MedlensError(f"--negative-class {negative_class!r} is not a class of gate {run_dir} ({names})")
    return Gate(loaded, negative_class, threshold, str(run_dir))
