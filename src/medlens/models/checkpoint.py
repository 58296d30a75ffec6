"""The exported model file: weights + the preprocessing spec + how to rebuild the network.

Only tensors and plain Python values are stored, so it loads with ``torch.load(..., weights_only=True)``.

A run directory may also hold what was decided after training, applied by every command that loads it:
``calibration.json`` (a temperature fitted by ``medlens calibrate``) and ``operating_point.json`` (the
threshold set by ``medlens evaluate --threshold``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.io.guard import load_torch_file
from medlens.models.fusion import fuse_conv_bn
from medlens.models.registry import create_model
from medlens.utils.files import atomic_write_bytes

FORMAT = "medlens.model/1"
MODEL_FILE = "model.pt"
CALIBRATION_FILE = "calibration.json"
OPERATING_POINT_FILE = "operating_point.json"


@dataclass
class LoadedModel:
    """A ready-to-run model with the preprocessing it was trained with."""

    model: torch.nn.Module
    spec: PreprocessingSpec
    name: str
    options: dict[str, Any]
    meta: dict[str, Any]
    #: ``{"method": "temperature", "T", "fit_on", ...}`` from the run's calibration.json, or None.
    calibration: dict[str, Any] | None = None
    #: ``{"class", "threshold", ...}`` from the run's operating_point.json, or None.
    operating_point: dict[str, Any] | None = None

    @property
    def temperature(self) -> float | None:
        """The fitted temperature, or None when the run is not calibrated."""
        return None if self.calibration is None else float(self.calibration["T"])


def save_model(
    path: str | Path,
    model: torch.nn.Module,
    *,
    name: str,
    options: dict[str, Any],
    spec: PreprocessingSpec,
    meta: dict[str, Any] | None = None,
) -> Path:
    payload = {
        "format": FORMAT,
        "model_name": name,
        "model_options": dict(options),
        "spec": spec.to_dict(),
        "meta": dict(meta or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_model(path: str | Path, *, fuse: bool = True) -> LoadedModel:
    """Rebuild the network from a medlens model file and load its weights (eval mode, for inference).

    ``fuse`` folds each BatchNorm into the convolution before it (:func:`medlens.models.fusion.fuse_conv_bn`:
    the same outputs to ~1e-6, 7-25 % faster on CPU); pass False to get the network exactly as trained.
    """

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise MedlensError(f"no trained model at {path}; train one with `medlens train SRC -o RUN_DIR` first")
    payload = load_torch_file(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MedlensError(f"{path} is not a medlens model file (expected format {FORMAT})")
    spec = PreprocessingSpec.from_dict(payload["spec"])
    options = dict(payload["model_options"])
    options.update(weights=None, pretrained=False)  # the state dict below restores every weight
    model = create_model(
        payload["model_name"],
        num_classes=spec.num_outputs,
        in_channels=spec.channels,
        spatial_dims=spec.spatial_dims,
        image_size=spec.image_size,
        **options,
    )
    model.load_state_dict(payload["state_dict"])
    model.eval()
    if fuse:
        fuse_conv_bn(model)
    return LoadedModel(
        model=model,
        spec=spec,
        name=payload["model_name"],
        options=payload["model_options"],
        meta=payload.get("meta", {}),
        calibration=read_run_file(path.parent / CALIBRATION_FILE, ("method", "T")),
        operating_point=read_run_file(path.parent / OPERATING_POINT_FILE, ("class", "threshold")),
    )


def read_run_file(path: Path, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """A run's calibration.json / operating_point.json, or None when absent; a damaged one is refused."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise MedlensError(
            f"cannot read {path}: {err}; delete it and run the command that writes it again"
        ) from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise MedlensError(f"{path} lacks {missing}; delete it and run the command that writes it again")
    return data
