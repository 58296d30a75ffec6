"""The preprocessing spec that travels inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PreprocessingSpec:
    """How raw images become model input; saved in checkpoints so predict reproduces training.

    Attributes:
        image_size: square side in pixels after resizing.
        channels: 1 (grayscale) or 3 (RGB; grayscale images are repeated to 3 channels).
        mean: per-channel mean subtracted after scaling intensities to [0, 1].
        std: per-channel standard deviation divided by after subtracting ``mean``.
        class_names: label names in model-output order.
        task: "classification" (others later).
    """

    image_size: int = 128
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    class_names: tuple[str, ...] = field(default_factory=tuple)
    task: str = "classification"

    def __post_init__(self) -> None:
        if not 8 <= int(self.image_size) <= 2048:
            raise ValueError(f"image_size must be between 8 and 2048 pixels, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean/std need {self.channels} values, got {self.mean} / {self.std}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessingSpec:
        d = dict(d)
        for key in ("mean", "std", "class_names"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
