"""The exported model file: weights + the preprocessing spec + how to rebuild the network.

Only tensors and plain Python values are stored, so it loads with ``torch.load(..., weights_only=True)``.

A run directory may also hold what was decided after training, applied by every command that loads it:
``calibration.json`` (a temperature fitted by ``medlens calibrate``) and ``operating_point.json`` (the
threshold set by ``medlens evaluate --threshold``), checked when read (:mod:`medlens.models.run_files`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.io.guard import first_line, load_torch_file
from medlens.models.fusion import fuse_conv_bn
from medlens.models.registry import create_model
from medlens.models.run_files import (
    CALIBRATION_FILE,
    OPERATING_POINT_FILE,
    read_calibration,
    read_operating_point,
    read_run_file,
)
from medlens.utils.files import atomic_write_bytes

__all__ = [
    "CALIBRATION_FILE",
    "FORMAT",
    "MODEL_FILE",
    "OPERATING_POINT_FILE",
    "LoadedModel",
    "load_model",
    "read_run_file",
    "save_model",
]

FORMAT = "medlens.model/1"
MODEL_FILE = "model.pt"


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


def load_model(
    path: str | Path, *, fuse: bool = True, calibration: bool = True, operating_point: bool = True
) -> LoadedModel:
    """Rebuild the network from a medlens model file and load its weights (eval mode, for inference).

    ``fuse`` folds each BatchNorm into the convolution before it (:func:`medlens.models.fusion.fuse_conv_bn`:
    the same outputs to ~1e-6, 7-25 % faster on CPU); pass False to get the network exactly as trained.
    ``calibration`` / ``operating_point``: read the run's calibration.json / operating_point.json (False for
    the commands that replace them, so that a damaged one can be written again).

    Raises:
        MedlensError: one line naming the file when it is missing, not a medlens model file, holds no or an
            invalid preprocessing spec, or weights that do not fit the network it describes; or when the
            run's calibration.json / operating_point.json is damaged (:mod:`medlens.models.run_files`).
    """

    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise MedlensError(f"no trained model at {path}; train one with `medlens train SRC -o RUN_DIR` first")
    payload = load_torch_file(path, "model file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MedlensError(f"{path} is not a medlens model file (expected format {FORMAT})")
    spec = _spec(path, payload)
    model = _network(path, payload, spec)
    if fuse:
        fuse_conv_bn(model)
    classes = list(spec.class_names)
    return LoadedModel(
        model=model,
        spec=spec,
        name=payload["model_name"],
        options=payload["model_options"],
        meta=payload.get("meta") if isinstance(payload.get("meta"), dict) else {},
        calibration=read_calibration(path.parent) if calibration else None,
        operating_point=read_operating_point(path.parent, classes) if operating_point else None,
    )


def _damaged(path: Path, problem: str) -> MedlensError:
    return MedlensError(
        f"model file {path} is damaged: {problem}; re-train, or copy the model.pt from the run that made it"
    )


def _spec(path: Path, payload: dict[str, Any]) -> PreprocessingSpec:
    """The payload's preprocessing spec, validated (a missing, non-mapping or invalid one is refused)."""
    raw = payload.get("spec")
    if raw is None:
        raise _damaged(path, "it holds no preprocessing spec")
    if not isinstance(raw, dict):
        raise _damaged(path, f"its preprocessing spec is a {type(raw).__name__}, not a mapping")
    try:
        return PreprocessingSpec.from_dict(raw)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise _damaged(path, f"its preprocessing spec is invalid ({first_line(err)})") from None


def _network(path: Path, payload: dict[str, Any], spec: PreprocessingSpec) -> torch.nn.Module:
    """Rebuild the network the payload names and load its weights; they must fit it exactly."""
    name, options, state = payload.get("model_name"), payload.get("model_options"), payload.get("state_dict")
    if not isinstance(name, str) or not isinstance(options, dict):
        raise _damaged(path, "it does not name its network (model_name, model_options)")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _damaged(path, "it holds no weights (state_dict of tensors)")
    options = {**options, "weights": None, "pretrained": False}  # the state dict restores every weight
    try:
        model = create_model(
            name,
            num_classes=spec.num_outputs,
            in_channels=spec.channels,
            spatial_dims=spec.spatial_dims,
            image_size=spec.image_size,
            **options,
        )
    except MedlensError as err:
        raise _damaged(path, f"it describes a network medlens cannot build ({err})") from None
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        raise _damaged(path, f"it describes a network medlens cannot build ({first_line(err)})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        classes = ", ".join(spec.class_names)
        raise _damaged(
            path,
            f"its weights do not fit the {name} network its spec describes ({spec.num_outputs} outputs for "
            f"classes {classes}; {spec.image_size} px, {spec.channels} channel(s)): {_state_reason(err)}",
        ) from None
    return model.eval()


def _state_reason(err: RuntimeError) -> str:
    """The first concrete line of PyTorch's load_state_dict message (a size mismatch or the missing keys)."""
    lines = [ln.strip().rstrip(".") for ln in str(err).splitlines() if ln.strip()]
    detail = [ln for ln in lines if not ln.startswith("Error(s) in loading")]
    text = detail[0] if detail else first_line(err)
    return text if len(text) <= 240 else text[:237] + "..."
