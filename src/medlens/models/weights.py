"""Load a state dict from a file into a medlens model, mapping torchvision/MONAI/lukemelas key names.

Matching is by name after renaming, then by shape. A first convolution trained on 3-channel (RGB) images is
loaded into a 1-channel model by summing its weights over the input-channel axis: a grey image repeated in
R, G and B gives the same response, which is the standard way to reuse ImageNet weights on grey scans.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from medlens.errors import MedlensError
from medlens.io.guard import load_torch_file
from medlens.models.heads import last_linear_name

log = logging.getLogger(__name__)

# Wrappers that training code puts around a network's own names.
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.", "net.", "network.")
# Final classification layers (torchvision, MONAI, lukemelas names): they go to our head.
_CLASSIFIER_PREFIXES = ("fc.", "_fc.", "classifier.", "class_layers.out.")
# torchvision DenseNet layers ("denselayer1.norm1." or the older "denselayer1.norm.1.") -> MONAI's
# "denselayer1.layers.norm1."; the same rule as MONAI's own densenet ``_load_state_dict``.
_DENSE_LAYER = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(.+)$")
# MONAI's EfficientNet nests blocks per stage ("_blocks.<stage>.<block>.") where lukemelas' weights number
# them flat ("_blocks.<block>."); the block number is global in both, so dropping the stage gives it.
_NESTED_BLOCK = re.compile(r"^(?:backbone\.)?_blocks\.\d+\.(\d+\..+)$")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MedlensError(f"weights file {path} does not exist: check the path given to weights=")
    obj = load_torch_file(path, "weights file")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    tensors = (
        {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} if isinstance(obj, Mapping) else {}
    )
    if not tensors:
        raise MedlensError(
            f"weights file {path} holds no state dict (a mapping of names to tensors): "
            "save one with torch.save(model.state_dict(), path)"
        )
    return tensors


def _strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _aliases(target: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Flat (lukemelas) names of MONAI's nested EfficientNet blocks -> the model's names."""
    aliases = {}
    for key in target:
        match = _NESTED_BLOCK.match(key)
        if match:
            aliases[f"_blocks.{match.group(1)}"] = key
    return aliases


def _candidates(key: str, head_linear: str | None, aliases: dict[str, str]) -> list[str]:
    """Target names a source key may have in a medlens model, most specific first."""
    bare = _strip_wrappers(key)
    bare = _DENSE_LAYER.sub(r"\1.layers.\2\3.\4", bare)
    names = [key, bare, f"backbone.{bare}"]
    if bare in aliases:
        names.append(aliases[bare])
    if head_linear is not None:
        for prefix in _CLASSIFIER_PREFIXES:
            if bare.startswith(prefix):
                names.append(f"head.{head_linear}.{bare.rsplit('.', 1)[-1]}")
    return names


def _adapt(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor | None:
    """``src`` fitted to ``dst``'s shape, or None. Handles the RGB -> 1-channel first conv."""
    if src.shape == dst.shape:
        return src
    if (
        src.dim() >= 3
        and src.shape[1] == 3
        and dst.shape[1] == 1
        and src.shape[2:] == dst.shape[2:]
        and src.shape[0] == dst.shape[0]
    ):
        return src.sum(dim=1, keepdim=True)
    return None


def _match(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], head_linear: str | None
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Source tensors keyed by the model names they load into, and the report lists."""
    aliases = _aliases(target)
    loaded: dict[str, torch.Tensor] = {}
    report: dict[str, list[str]] = {
        k: [] for k in ("matched", "missing", "unexpected", "shape_mismatch", "adapted")
    }
    for key, tensor in source.items():
        names = [n for n in _candidates(key, head_linear, aliases) if n in target and n not in loaded]
        if not names:
            report["unexpected"].append(key)
            continue
        fitted = _adapt(tensor, target[names[0]])
        if fitted is None:
            report["shape_mismatch"].append(key)
            continue
        if fitted is not tensor:
            report["adapted"].append(names[0])
        loaded[names[0]] = fitted.to(target[names[0]].dtype)
    report["matched"] = [k for k in target if k in loaded]
    report["missing"] = [k for k in target if k not in loaded]
    return loaded, report


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = False) -> dict[str, list[str]]:
    """Load matching tensors from a state-dict file into ``model``.

    Accepts a raw state dict or a checkpoint holding one under "state_dict" / "model"; strips wrapper
    prefixes ("module.", "model."); maps torchvision names to MONAI's (DenseNet layers; ``fc`` /
    ``classifier`` / ``_fc`` to the head's output layer); sums a 3-channel first conv for a 1-channel model.

    Args:
        model: the network (a :class:`~medlens.models.classifier.Classifier` or a bare backbone).
        path: file written by ``torch.save``; read with ``weights_only=True`` (no code is unpickled).
        strict: raise when any model tensor stays unloaded or any source tensor has a different shape.

    Returns:
        A dict of name lists: "matched" / "missing" (model names loaded / not loaded), "unexpected" /
        "shape_mismatch" (file names unused / of another shape), "adapted" (model names channel-summed).

    Raises:
        MedlensError: missing file, not a state dict, no tensor matched, or ``strict`` and incomplete.
    """
    path = Path(path)
    target = model.state_dict()
    head = getattr(model, "head", None)
    head_linear = last_linear_name(head) if isinstance(head, nn.Module) else None
    loaded, report = _match(_read_state_dict(path), target, head_linear)
    _check(report, path, strict)
    model.load_state_dict({**target, **loaded})
    log.info(
        "loaded %s: %d tensors matched, %d missing, %d unexpected, %d shape mismatches%s",
        path,
        len(report["matched"]),
        len(report["missing"]),
        len(report["unexpected"]),
        len(report["shape_mismatch"]),
        f", {len(report['adapted'])} RGB conv(s) summed to 1 channel" if report["adapted"] else "",
    )
    return report


def _check(report: dict[str, list[str]], path: Path, strict: bool) -> None:
    if not report["matched"]:
        example = (report["unexpected"] + report["shape_mismatch"] + ["?"])[0]
        raise MedlensError(
            f"no tensor in {path} matches the model (first file key: {example!r}): "
            "the weights belong to another architecture; pick the matching model"
        )
    if strict and (report["missing"] or report["shape_mismatch"]):
        bad = (report["missing"] + report["shape_mismatch"])[:3]
        raise MedlensError(
            f"weights file {path} does not fit the model completely ({len(report['missing'])} missing, "
            f"{len(report['shape_mismatch'])} shape mismatches, e.g. {', '.join(bad)}): "
            "use strict=False to load what fits"
        )
