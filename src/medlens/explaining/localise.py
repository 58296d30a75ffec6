"""Explaining segmentation and detection answers.

Segmentation: the predicted mask over the image, and an uncertainty map: the per-pixel entropy of the class
probabilities averaged over flip test-time augmentation (the image as is, flipped left-right and up-down;
each prediction flipped back), or over Monte Carlo dropout samples when the network has dropout. Per case:
lesion area (pixels, share of the image; volumes: voxels and mL), connected components, and the mean
uncertainty inside the predicted mask. Detection: the box, its score (how stable the box is under a
left-right flip: the IoU of the two boxes), and Grad-CAM of the box head. Both get the out-of-distribution
score of the run's index (2D runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from medlens.data.cache import resize_image
from medlens.errors import MedlensError
from medlens.explaining.cam import box_attribution, cam_layer, peak
from medlens.explaining.embedding import embed
from medlens.explaining.explainers import ExplainContext, register_explainer, study_error
from medlens.explaining.render import blend, compose
from medlens.io import read_image
from medlens.io.failures import read_guarded
from medlens.io.volumes import is_nifti_file
from medlens.tasks.base import channels_last, normalize
from medlens.tasks.boxes import paired_ious
from medlens.tasks.detection import draw_boxes, predict_boxes
from medlens.tasks.segmentation import overlay_rgb
from medlens.tasks.volumes import preprocess_volume, read_any_volume

MC_SAMPLES = 8


# -- segmentation ----------------------------------------------------------------------------------------
@register_explainer("segmentation")
def explain_segmentation(loaded, studies: list, ctx: ExplainContext) -> list[dict[str, Any]]:
    """Mask overlay, uncertainty map, lesion size, components and OOD per study."""
    records = []
    for study in studies:
        try:
            if loaded.spec.spatial_dims == 3:
                records.append({"input": study.input, **_explain_volume(loaded, study, ctx)})
            else:
                records.append({"input": study.input, **_explain_slice(loaded, study, ctx)})
        except MedlensError as err:  # unreadable, or not what this model reads: reported, never dropped
            records.append({"input": study.input, "error": study_error(err)})
    return records


def _explain_slice(loaded, study, ctx: ExplainContext) -> dict[str, Any]:
    if is_nifti_file(study.path):
        raise MedlensError(f"{study.input}: model {loaded.name} segments 2D images; give an image file")
    image = read_guarded(study.path, read_image, study.path)
    spec = loaded.spec
    small = resize_image(image, spec.image_size, spec.channels)
    x = channels_last(normalize(torch.from_numpy(small[None].copy()), spec))
    probs, method = _tta_probs(loaded.model, x)
    plain = _probs(loaded.model, x)
    mask_small = plain[0].argmax(0).numpy().astype(np.uint8)
    entropy = _entropy(probs[0])
    h, w = image.shape[:2]
    mask = np.asarray(Image.fromarray(mask_small).resize((w, h), Image.NEAREST))
    uncertainty = np.asarray(Image.fromarray(entropy.astype(np.float32)).resize((w, h), Image.BILINEAR))
    record = _lesion_facts(mask, uncertainty, spacing=None)
    record.update({"spatial_dims": 2, "uncertainty_method": method})
    if ctx.index is not None:
        record["ood"] = ctx.index.ood(embed(loaded, small[None]))[0]
    record["rationale"] = seg_rationale(record)
    if ctx.write_png:
        path = ctx.out / ctx.png_name(study.input)
        lines = [record["rationale"]]
        compose(
            [
                ("image", image),
                ("mask", overlay_rgb(image, mask)),
                ("uncertainty", blend(image, uncertainty)),
            ],
            lines,
            path,
        )
        record["png"] = path.name
    return record


def _explain_volume(loaded, study, ctx: ExplainContext) -> dict[str, Any]:
    volume, _affine, spacing = read_guarded(study.path, read_any_volume, study.path)
    spec = loaded.spec
    if volume.shape[0] != spec.channels:
        raise MedlensError(
            f"{study.input}: {volume.shape[0]} channel(s), but model {loaded.name} takes {spec.channels}"
        )
    x = preprocess_volume(volume, spacing, spec)[None]
    probs = []
    for dims in ((), (2,), (3,)):
        xi = torch.flip(x, dims) if dims else x
        p = torch.softmax(_sliding(loaded.model, spec, xi), dim=1)
        probs.append(torch.flip(p, dims) if dims else p)
    mean = torch.stack(probs).mean(0)
    size = tuple(volume.shape[1:])
    plain = F.interpolate(probs[0], size=size, mode="trilinear", align_corners=False)[0]
    mean = F.interpolate(mean, size=size, mode="trilinear", align_corners=False)[0]
    mask = plain.argmax(0).numpy().astype(np.uint8)
    uncertainty = _entropy(mean)
    record = _lesion_facts(mask, uncertainty, spacing=spacing)
    record.update({"spatial_dims": 3, "uncertainty_method": "flip test-time augmentation (3 passes)"})
    record["rationale"] = seg_rationale(record)
    if ctx.write_png:
        k = int(np.argmax(mask.reshape(-1, mask.shape[-1]).sum(0))) if mask.any() else mask.shape[-1] // 2
        plane = volume[min(1, volume.shape[0] - 1), :, :, k] if volume.shape[0] == 3 else volume[0, :, :, k]
        path = ctx.out / ctx.png_name(study.input)
        compose(
            [
                (f"slice {k}", plane),
                ("mask", overlay_rgb(plane, mask[:, :, k])),
                ("uncertainty", blend(plane, uncertainty[:, :, k])),
            ],
            [record["rationale"]],
            path,
        )
        record["png"] = path.name
    return record


def seg_rationale(r: dict[str, Any]) -> str:
    """One line of facts: lesion size, components, uncertainty, OOD."""
    if not r["lesion_pixels"]:
        parts = ["no lesion segmented"]
    else:
        unit = "volume" if r["spatial_dims"] == 3 else "image"
        size = f"lesion segmented: {100 * r['lesion_fraction']:.2f} % of the {unit}"
        if r.get("lesion_ml") is not None:
            size += f" ({r['lesion_ml']:.1f} mL)"
        parts = [size, f"{r['components']} component(s)"]
        if r.get("mean_uncertainty_in_mask") is not None:
            parts.append(
                f"mean uncertainty inside {r['mean_uncertainty_in_mask']:.2f} (0 = sure, 1 = coin toss)"
            )
    if r.get("ood"):
        parts.append(
            "image unlike the training data: review" if r["ood"]["flag"] else "image typical of training data"
        )
    return "; ".join(parts)


def _lesion_facts(mask: np.ndarray, uncertainty: np.ndarray, spacing) -> dict[str, Any]:
    fg = mask > 0
    _, components = ndimage.label(fg, structure=np.ones((3,) * fg.ndim))
    out: dict[str, Any] = {
        "lesion_pixels": int(fg.sum()),
        "lesion_fraction": round(float(fg.mean()), 6),
        "components": int(components),
        "mean_uncertainty_in_mask": round(float(uncertainty[fg].mean()), 4) if fg.any() else None,
        "mean_uncertainty": round(float(uncertainty.mean()), 4),
    }
    if spacing is not None:
        out["lesion_ml"] = round(float(fg.sum() * np.prod(spacing) / 1000.0), 3)
    return out


@torch.no_grad()
def _probs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model.eval()(x).float(), dim=1)


@torch.no_grad()
def _tta_probs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Mean class probabilities over Monte Carlo dropout samples (when the network has dropout), else over
    flip test-time augmentation; and the method's name."""
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]
    if dropouts:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # the same image gives the same map
        try:
            for m in dropouts:
                m.train()
            samples = [torch.softmax(model(x).float(), dim=1) for _ in range(MC_SAMPLES)]
        finally:
            model.eval()
            torch.random.set_rng_state(gen_state)
        return torch.stack(samples).mean(0), f"Monte Carlo dropout ({MC_SAMPLES} samples)"
    model.eval()
    probs = []
    for dims in ((), (3,), (2,)):
        xi = torch.flip(x, dims) if dims else x
        p = torch.softmax(model(xi).float(), dim=1)
        probs.append(torch.flip(p, dims) if dims else p)
    return torch.stack(probs).mean(0), "flip test-time augmentation (3 passes)"


def _entropy(probs: torch.Tensor) -> np.ndarray:
    """Per-pixel entropy of (K, ...) probabilities, divided by log K (0 = certain, 1 = uniform)."""
    p = probs.clamp_min(1e-8)
    return (-(p * p.log()).sum(0) / np.log(p.shape[0])).numpy()


@torch.no_grad()
def _sliding(model, spec, x: torch.Tensor) -> torch.Tensor:
    from monai.inferers import sliding_window_inference  # deferred: MONAI is heavy

    return torch.as_tensor(
        sliding_window_inference(x, spec.patch_size, 4, model.eval(), overlap=0.25, mode="gaussian")
    ).float()


# -- detection -------------------------------------------------------------------------------------------
@register_explainer("detection")
def explain_detection(loaded, studies: list, ctx: ExplainContext) -> list[dict[str, Any]]:
    """The box, its flip-stability score, Grad-CAM of the box head, and OOD per study."""
    spec = loaded.spec
    layer = cam_layer(loaded.name, loaded.model)
    records = []
    for study in studies:
        try:
            image = read_guarded(study.path, read_image, study.path)
        except MedlensError as err:
            records.append({"input": study.input, "error": study_error(err)})
            continue
        h, w = image.shape[:2]
        small = resize_image(image, spec.image_size, spec.channels)[None]
        box = predict_boxes(loaded.model, spec, small, [(h, w)])[0]
        flipped = predict_boxes(loaded.model, spec, small[..., ::-1].copy(), [(h, w)])[0]
        unflipped = np.array([w - flipped[2], flipped[1], w - flipped[0], flipped[3]])
        score = float(paired_ious([list(box)], [list(unflipped)])[0])
        x = channels_last(normalize(torch.from_numpy(small.copy()), spec))
        heat = box_attribution(loaded.model, x, layer=layer)[0]
        record: dict[str, Any] = {
            "input": study.input,
            "box": [round(float(v), 2) for v in box],
            "box_score": round(score, 4),
            "box_score_rule": "IoU of the box with the box predicted on the left-right flipped image",
            "method": "gradcam (box head, mean of the 4 outputs)",
            "layer": layer,
            "peak": [int(v) for v in peak(heat)],
        }
        if ctx.index is not None:
            record["ood"] = ctx.index.ood(embed(loaded, small))[0]
        x0, y0, x1, y1 = record["box"]
        parts = [f"box x {x0:.0f}-{x1:.0f}, y {y0:.0f}-{y1:.0f}", f"box score {score:.2f} (flip stability)"]
        if record.get("ood"):
            parts.append(
                "image unlike the training data: review"
                if record["ood"]["flag"]
                else "image typical of training data"
            )
        record["rationale"] = "; ".join(parts)
        if ctx.write_png:
            path = ctx.out / ctx.png_name(study.input)
            boxed = np.asarray(draw_boxes(image, [record["box"]]))
            compose(
                [("box", boxed), ("Grad-CAM (box head)", blend(image, heat))], [record["rationale"]], path
            )
            record["png"] = path.name
        records.append(record)
    return records
