"""Where a model looks: Grad-CAM, Grad-CAM++ and occlusion maps, the peak of a map, and a heat overlay.

The maps come from MONAI's :class:`~monai.visualize.GradCAM`, :class:`~monai.visualize.GradCAMpp` and
:class:`~monai.visualize.OcclusionSensitivity`, with three things around them:

* per-sample targets: MONAI scores ``logits[:, class_idx]``, which for a batch with different classes sums
  every sample's logit of every chosen class; here each sample's own target logit is scored (one forward
  and one backward for the whole batch);
* the model is left as it was: eval mode during the call, then every module's train/eval flag, every
  parameter's ``requires_grad`` and ``.grad``, every ``inplace`` flag and the hooks MONAI registers (it
  keeps no handles) are restored;
* the gradient stops at the hooked layer: its output is detached into a leaf that requires grad, so a
  frozen backbone still gives a map and the backward pass only runs through the layers after it.

Each map is min-max normalised to [0, 1] on its own (a constant map, e.g. all zero, becomes all zero) and
has the input's resolution.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from monai.visualize import GradCAM, GradCAMpp, OcclusionSensitivity
from monai.visualize.class_activation_maps import ModelWithHooks
from PIL import Image
from torch import nn

from medlens.errors import MedlensError
from medlens.models.registry import get_model_info

METHODS = ("gradcam", "gradcampp", "occlusion")
#: Occlusion: share of overlap between neighbouring occluded patches, and patches per forward pass.
OCCLUSION_OVERLAP = 0.5
OCCLUSION_BATCH = 64
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_hooks",
)


def cam_layer(model_name: str, model: nn.Module) -> str:
    """The registry's Grad-CAM layer of ``model_name``, checked to exist in ``model``.

    Args:
        model_name: registry name (``medlens models``).
        model: the built model.

    Raises:
        MedlensError: when the registry names no layer for the model or ``model`` has no such module.
    """
    layer = get_model_info(model_name).cam_layer
    if layer is None:
        raise MedlensError(
            f"model {model_name!r} names no Grad-CAM layer (cam_layer in its @register_model): "
            "use method 'occlusion', or add cam_layer to the model's registration"
        )
    _module(model, layer, f"model {model_name!r}")
    return layer


def attribution_maps(
    model: nn.Module,
    x: torch.Tensor,
    *,
    layer: str | None,
    method: str = "gradcam",
    target: int | Sequence[int] | None = None,
    occlusion_mask: int | None = None,
) -> np.ndarray:
    """Attribution maps of a classifier for a normalised batch.

    Args:
        model: a module mapping (N, C, H, W) to logits (N, K).
        x: normalised float batch (N, C, H, W).
        layer: dotted module name Grad-CAM hooks (see :func:`cam_layer`); ignored (may be None) for occlusion.
        method: one of :data:`METHODS`.
        target: class explained: None = each sample's predicted (argmax) class, an int for every sample, or
            one class per sample.
        occlusion_mask: side in pixels of the occluded patch (default: an eighth of the smaller side, >= 3).

    Returns:
        Maps (N, H, W) float32 in [0, 1], each min-max normalised, at the input resolution.

    Raises:
        MedlensError: for an unknown method or layer, a bad input shape, or a bad target.
    """
    if method not in METHODS:
        raise MedlensError(f"unknown attribution method {method!r}: use one of {', '.join(METHODS)}")
    x = _check_input(x, model)
    targets = _targets(target, x.shape[0])
    if method == "occlusion":
        return _occlusion(model, x, targets, occlusion_mask)
    if layer is None:
        raise MedlensError(f"method {method!r} needs a layer: pass layer=cam_layer(model_name, model)")
    with _prepared(model, layer) as hooks:
        cam_cls = GradCAM if method == "gradcam" else GradCAMpp
        cam = cam_cls(nn_module=hooks, target_layers=layer, postprocessing=_identity)
        maps = cam(x, class_idx=targets)
    return _normalise(maps[:, 0])


def box_attribution(model: nn.Module, x: torch.Tensor, *, layer: str) -> np.ndarray:
    """Grad-CAM of a single-box regressor (``boxnet``): the mean of the 4 box outputs' normalised maps.

    Each of the 4 raw outputs (before the detection task's sigmoid) is explained on its own, its map min-max
    normalised, and the 4 maps averaged (so the result is in [0, 1] but need not reach 1).

    Args:
        model: a module mapping (N, C, H, W) to the 4 box numbers (N, 4).
        x: normalised float batch (N, C, H, W).
        layer: dotted module name Grad-CAM hooks (see :func:`cam_layer`).

    Returns:
        Maps (N, H, W) float32 in [0, 1].
    """
    x = _check_input(x, model)
    total = np.zeros((x.shape[0], *x.shape[2:]), dtype=np.float32)
    with _prepared(model, layer) as hooks:
        cam = GradCAM(nn_module=hooks, target_layers=layer, postprocessing=_identity)
        for k in range(4):
            total += _normalise(cam(x, class_idx=torch.full((x.shape[0],), k, dtype=torch.long))[:, 0])
    return total / 4


def peak(map2d: np.ndarray) -> tuple[int, int]:
    """(x, y) of the maximum of a 2D map; the first in raster order on ties."""
    arr = np.asarray(map2d)
    if arr.ndim != 2 or arr.size == 0:
        raise MedlensError(f"peak needs a non-empty 2D map, got shape {arr.shape}")
    y, x = np.unravel_index(int(np.argmax(arr)), arr.shape)
    return int(x), int(y)


def overlay(image_rgb_uint8: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``heat`` drawn over an RGB picture with matplotlib's "jet" colormap.

    Args:
        image_rgb_uint8: the picture (H, W, 3) uint8.
        heat: map in [0, 1] (values outside are clipped, NaN counts as 0); resized to (H, W) with PIL bilinear
            when its shape differs.
        alpha: weight of the heat colours, in [0, 1].

    Returns:
        (H, W, 3) uint8.
    """
    image = np.asarray(image_rgb_uint8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise MedlensError(
            f"overlay needs an RGB uint8 picture (H, W, 3), got {image.dtype} {image.shape}: "
            "convert it with medlens.data.cache.to_uint8(image, 3)"
        )
    if not 0.0 <= alpha <= 1.0:
        raise MedlensError(f"overlay alpha must be in [0, 1], got {alpha}")
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float32), nan=0.0)
    if heat.ndim != 2:
        raise MedlensError(f"overlay needs a 2D heat map, got shape {heat.shape}")
    h, w = image.shape[:2]
    if heat.shape != (h, w):
        heat = np.asarray(Image.fromarray(heat, mode="F").resize((w, h), Image.BILINEAR))
    lut = (colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.float32)
    colours = lut[np.round(np.clip(heat, 0.0, 1.0) * 255).astype(np.intp)]
    out = image.astype(np.float32) * (1.0 - alpha) + colours * alpha
    return np.round(out).clip(0, 255).astype(np.uint8)


class _TargetHooks(ModelWithHooks):
    """MONAI's hooked model, scoring each sample's own target logit.

    The score has shape (N, 1, ..., 1) so that Grad-CAM++'s ``score.exp() * grad`` pairs each sample with its
    own gradients.
    """

    def __call__(self, x, class_idx=None, retain_graph=False, **kwargs):
        self._ndim = x.ndim
        return super().__call__(x, class_idx=class_idx, retain_graph=retain_graph, **kwargs)

    def class_score(self, logits: torch.Tensor, class_idx: Any) -> torch.Tensor:
        if logits.ndim != 2:
            raise MedlensError(
                f"Grad-CAM needs a model returning one score per class (N, K), got shape "
                f"{tuple(logits.shape)}: explain a classifier or boxnet (box_attribution)"
            )
        n, k = logits.shape
        idx = torch.as_tensor(class_idx, device=logits.device, dtype=torch.long).reshape(-1)
        if idx.numel() == 1:
            idx = idx.expand(n)
        if idx.numel() != n:
            raise MedlensError(
                f"got {idx.numel()} targets for a batch of {n}: pass one per sample or one int"
            )
        _check_range(idx, k)
        return logits.gather(1, idx[:, None]).view(n, *[1] * (self._ndim - 1))


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _leaf_output(_module: nn.Module, _inputs: Any, output: Any) -> Any:
    # Gradient stops here: Grad-CAM only needs d score / d activations of the hooked layer.
    if isinstance(output, torch.Tensor):
        return output.detach().requires_grad_(True)
    return None


def _module(model: nn.Module, layer: str, what: str = "this model") -> nn.Module:
    found = dict(model.named_modules()).get(layer)
    if found is None or not layer:
        raise MedlensError(
            f"layer {layer!r} does not exist in {what}: pass a name from `model.named_modules()` "
            "(or fix cam_layer in the model's @register_model)"
        )
    return found


@contextmanager
def _prepared(model: nn.Module, layer: str) -> Iterator[_TargetHooks]:
    """The model in eval mode, hooked at ``layer`` for MONAI's CAMs; on exit everything is as it was."""
    target = _module(model, layer)
    modules = list(model.modules())
    training = [m.training for m in modules]
    inplace = [(m, m.__dict__["inplace"]) for m in modules if isinstance(m.__dict__.get("inplace"), bool)]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    hooks_before = {name: set(getattr(target, name, {})) for name in _HOOK_DICTS}
    full_backward = target._is_full_backward_hook
    leaf = target.register_forward_hook(_leaf_output)
    hooked = None
    try:
        model.eval()
        for p in params:
            p.requires_grad_(False)  # no weight gradients: only the activations' gradient is needed
        for m, _ in inplace:
            m.inplace = False  # an in-place op on the hooked output breaks MONAI's full backward hook
        with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
            # expected: no input of the hooked layer requires grad, so the hook reports output gradients
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            hooked = _TargetHooks(model, layer, register_forward=True, register_backward=True)
            yield hooked
    finally:
        if hooked is not None:
            # MONAI keeps the layer's output, its gradient and the score on this object, and the autograd
            # nodes behind them hold the backward hook whose closure holds this object: a cycle through C++
            # autograd nodes that Python's collector cannot free. Without this, a server leaked ~100 KB per
            # explained image.
            hooked.activations.clear()
            hooked.gradients.clear()
            hooked.score = None
        leaf.remove()
        for name, before in hooks_before.items():
            hooks = getattr(target, name, None)
            if hooks is not None:
                for key in [k for k in hooks if k not in before]:
                    del hooks[key]
        target._is_full_backward_hook = full_backward
        for m, flag in zip(modules, training):
            m.training = flag
        for m, flag in inplace:
            m.inplace = flag
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad


def _occlusion(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor | None, mask: int | None
) -> np.ndarray:
    """Drop of the target's probability when a Gaussian patch around each pixel is occluded, >= 0."""
    h, w = x.shape[2:]
    size = int(mask) if mask is not None else max(3, min(h, w) // 8)
    if not 1 <= size <= min(h, w):
        raise MedlensError(f"occlusion_mask must be between 1 and {min(h, w)} pixels, got {size}")
    occ = OcclusionSensitivity(
        model,
        mask_size=size,
        n_batch=OCCLUSION_BATCH,
        verbose=False,
        overlap=OCCLUSION_OVERLAP,
        activate=lambda logits: logits.softmax(1),
    )
    modules = list(model.modules())
    training = [m.training for m in modules]
    drops = []
    try:
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            # MONAI's occlusion indexes with lists, which this torch version warns about on every patch
            warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
            probs = model(x).softmax(1)
            idx = probs.argmax(1) if targets is None else targets.to(probs.device).expand(x.shape[0])
            _check_range(idx, probs.shape[1])
            for i in range(x.shape[0]):
                sens, _ = occ(x[i : i + 1])
                t = int(idx[i])
                drops.append((probs[i, t] - torch.as_tensor(sens)[0, t]).clamp_min(0))
    finally:
        for m, flag in zip(modules, training):
            m.training = flag
    return _normalise(torch.stack(drops))


def _check_input(x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise MedlensError(
            f"attribution maps need a normalised float batch (N, C, H, W), got {shape}: "
            "add the batch axis with x[None] and normalise as for prediction"
        )
    param = next(model.parameters(), None)
    return x.detach() if param is None else x.detach().to(param.device)


def _targets(target: int | Sequence[int] | None, n: int) -> torch.Tensor | None:
    if target is None:
        return None
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return torch.full((n,), int(target), dtype=torch.long)
    values = list(np.asarray(target).reshape(-1))
    if len(values) != n or not all(isinstance(v, (int, np.integer)) for v in values):
        raise MedlensError(f"target must be None, an int, or {n} ints (one per sample), got {target!r}")
    return torch.tensor([int(v) for v in values], dtype=torch.long)


def _check_range(idx: torch.Tensor, k: int) -> None:
    if bool(((idx < 0) | (idx >= k)).any()):
        raise MedlensError(
            f"target class out of range: the model has {k} outputs, pass a class in 0..{k - 1}"
        )


def _normalise(maps: torch.Tensor) -> np.ndarray:
    """Each map (N, H, W) scaled to [0, 1]; a constant map becomes 0."""
    arr = np.nan_to_num(maps.detach().float().cpu().numpy().astype(np.float32), nan=0.0, posinf=0.0)
    flat = arr.reshape(arr.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    safe = np.where(span > 0, span, 1.0)
    out = np.where(span > 0, (flat - lo) / safe, 0.0).astype(np.float32)
    return np.clip(out, 0.0, 1.0).reshape(arr.shape)
