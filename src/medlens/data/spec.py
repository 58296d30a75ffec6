"""The preprocessing spec that travels inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: The built-in tasks (more can be registered with medlens.tasks.registry.register_task).
TASKS = ("classification", "segmentation", "detection")
#: ``outputs`` of specs saved before the field existed, by task (classifiers: one output per class).
LEGACY_OUTPUTS = {"detection": 4}
INTENSITY = ("dataset", "image", "volume")


@dataclass(frozen=True)
class PreprocessingSpec:
    """How raw images become model input; saved in checkpoints so predict reproduces training.

    Fields added after the first release have defaults, so older checkpoints still load.

    Attributes:
        image_size: square side in pixels after resizing (2D); for 3D the in-plane side is not resized.
        channels: 1 or 3 for 2D images (grayscale is repeated to 3 channels); any count for 3D volumes.
        mean: per-channel mean subtracted after scaling intensities to [0, 1] (``intensity="dataset"``).
        std: per-channel standard deviation divided by after subtracting ``mean``.
        class_names: label names in model-output order (segmentation: "background" first).
        task: "classification", "segmentation" or "detection".
        spatial_dims: 2 for images and slices, 3 for volumes.
        patch_size: training patch and sliding-window size of 3D models (voxels per axis).
        spacing: target voxel size in mm that 3D volumes are resampled to (None: kept as stored).
        intensity: "dataset" (the mean/std above), "image" (each 2D image's channels standardised over their
            non-zero pixels) or "volume" (the same per 3D volume, as nnU-Net does for MRI).
    """

    image_size: int = 128
    channels: int = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    class_names: tuple[str, ...] = field(default_factory=tuple)
    task: str = "classification"
    spatial_dims: int = 2
    patch_size: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    intensity: str = "dataset"
    outputs: int | None = None

    def __post_init__(self) -> None:
        if not 8 <= int(self.image_size) <= 2048:
            raise ValueError(f"image_size must be between 8 and 2048 pixels, got {self.image_size}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.spatial_dims == 2 and self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 1 <= int(self.channels) <= 64:
            raise ValueError(f"channels must be between 1 and 64, got {self.channels}")
        if self.intensity == "dataset" and (
            len(self.mean) != self.channels or len(self.std) != self.channels
        ):
            raise ValueError(f"mean/std need {self.channels} values, got {self.mean} / {self.std}")
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"task must be a task name (e.g. one of {', '.join(TASKS)}), got {self.task!r}")
        if self.intensity not in INTENSITY:
            raise ValueError(f"intensity must be one of {', '.join(INTENSITY)}, got {self.intensity!r}")
        for name in ("patch_size", "spacing"):
            value = getattr(self, name)
            if value is not None and len(value) != self.spatial_dims:
                raise ValueError(f"{name} needs {self.spatial_dims} values, got {value}")

    @property
    def num_outputs(self) -> int:
        """Output width of the network: ``outputs`` where the task set it (detection: 4 box numbers), else
        one logit per class."""
        return self.outputs if self.outputs is not None else len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["outputs"] is None:  # left out: older readers do not know the field
            del d["outputs"]
        for key in ("mean", "std", "class_names", "patch_size", "spacing"):
            d[key] = None if d[key] is None else list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessingSpec:
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}  # a newer file's extra fields are ignored
        if "outputs" not in d:  # written before specs recorded it: only detection had a fixed width
            d["outputs"] = LEGACY_OUTPUTS.get(d.get("task", ""))
        for key in ("mean", "std", "class_names", "patch_size", "spacing"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
