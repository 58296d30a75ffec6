"""Detection of one box per image: backbone + 4-number head, SmoothL1 + GIoU loss, IoU while training.

Batches are ``(images uint8 (N, C, S, S), box masks uint8 (N, S, S))``: each box is carried as a filled
rectangle, so the random affine that moves the image moves the box with it (nearest neighbour) and the target
is read back from the warped rectangle. Rotation is left out for boxes: a rotated rectangle's bounding box is
looser than the object's, which would teach the model loose boxes.

The network's 4 outputs go through a sigmoid and are read as (centre x, centre y, width, height) in fractions
of the image, so predicted corners are always ordered and inside the image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from medlens.data.augment import augment_pair
from medlens.data.cache import cache_pairs, resize_image, to_uint8
from medlens.data.manifest import Manifest
from medlens.data.prepared import PreparedData, channel_stats
from medlens.data.seg_sources import check_pair
from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.io.failures import read_guarded, row_error
from medlens.io.images import decode_image, read_image
from medlens.tasks.base import Task, channels_last, normalize
from medlens.tasks.boxes import box_iou, giou_loss, mask_to_box
from medlens.tasks.localise import check_nonempty, check_splits, image_channels, intensity, split_manifest
from medlens.tasks.registry import register_task
from medlens.tasks.reporting import localisation_section, worst_cases_by_iou
from medlens.utils.staging import staged_outputs

BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def decode_boxes(output: torch.Tensor) -> torch.Tensor:
    """Network outputs (N, 4) → boxes (x0, y0, x1, y1) in fractions of the image."""
    cx, cy, w, h = torch.sigmoid(output.float()).unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def boxes_from_masks(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight boxes of box masks (N, H, W) in fractions of the image, and which masks are non-empty."""
    m = masks > 0
    _n, h, w = m.shape
    rows, cols = m.any(2), m.any(1)
    ar_h, ar_w = torch.arange(h, device=m.device), torch.arange(w, device=m.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h + 1, 0).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w + 1, 0).amax(1)
    boxes = torch.stack([x0 / w, y0 / h, x1 / w, y1 / h], dim=1).float()
    return boxes, rows.any(1)


def box_masks(boxes: np.ndarray, shapes: np.ndarray, size: int) -> np.ndarray:
    """Filled rectangles (N, size, size) for pixel boxes (N, 4) on images of ``shapes`` (N, 2) = (H, W)."""
    out = np.zeros((len(boxes), size, size), dtype=np.uint8)
    for i, ((x0, y0, x1, y1), (h, w)) in enumerate(zip(boxes, shapes)):
        c0, c1 = round(x0 / w * size), round(x1 / w * size)
        r0, r1 = round(y0 / h * size), round(y1 / h * size)
        out[i, r0 : max(r1, r0 + 1), c0 : max(c1, c0 + 1)] = 1  # at least one pixel survives resizing
    return out


@register_task("detection")
class DetectionTask(Task):
    """Single-box regression: data (boxes from columns or masks), loop hooks, boxes out, report section.

    Evaluation is the ``detection`` evaluator of :mod:`medlens.evaluation.det_evaluate` (IoU with bootstrap
    intervals over patients and example figures come from the evaluation layer above this one).
    """

    name = "detection"
    default_model = "boxnet"
    monitor = "val_iou"
    evaluator = "detection"
    explainer = "detection"
    prediction_columns = ("box x0,y0,x1,y1", "overlay")

    def __init__(self, giou_weight: float = 1.0, l1_beta: float = 0.02):
        self.giou_weight, self.l1_beta = giou_weight, l1_beta

    # -- whole-path hooks ------------------------------------------------------------------------------
    def check_config(self, cfg) -> None:
        """Detection takes ``boxes_from_masks``."""

    def prepare(self, source, cfg, info, progress: bool, fix=None):
        """Boxes from box columns or masks, patient-grouped validation (:func:`prepare_detection`)."""
        return prepare_detection(self.resolve(source), cfg, info, progress, fix)

    def summary_model(self, num_classes: int, head: str, freeze_backbone: bool) -> tuple[int, dict[str, Any]]:
        return len(BOX_COLUMNS), {}

    def report_section(self, summary: dict[str, Any]) -> dict[str, Any]:
        return localisation_section(summary, worst_cases_by_iou(summary))

    def write_predictions(
        self, loaded, files: list, out: Path, *, gate=None, negative_class=None, gate_threshold: float = 0.5
    ) -> list[dict[str, Any]]:
        """The box drawn on each image (see :func:`write_predictions`)."""
        if gate is not None:
            raise MedlensError("--gate passes positives to a segmentation run, not to a detection run")
        return write_predictions(loaded, files, out)

    def triage_score(self, record: dict[str, Any], urgent: dict[str, float] | None) -> tuple[float, str]:
        """The box score: how stable the box is under a horizontal flip (IoU of the two boxes), in [0, 1]."""
        score = float(record.get("box_score") or 0.0)
        return score, f"box score {score:.2f}"

    def prediction_row(self, record: dict[str, Any]) -> list[str]:
        return [", ".join(f"{v:.1f}" for v in record["box"]), record["overlay"]]

    # -- loop hooks -----------------------------------------------------------------------------------

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = decode_boxes(output)
        l1 = F.smooth_l1_loss(pred, target, beta=self.l1_beta)
        return l1 + self.giou_weight * giou_loss(pred, target)

    def prepare_batch(self, batch, spec: PreprocessingSpec, augment=None, gen: torch.Generator | None = None):
        x, m = batch
        x = normalize(x, spec)
        if augment is not None:
            x, m = augment_pair(x, m, dataclasses.replace(augment, rotate_deg=0.0), gen)
        boxes, valid = boxes_from_masks(m)
        return channels_last(x), boxes, valid

    def training_loss(self, model: torch.nn.Module, batch) -> tuple[torch.Tensor, int]:
        x, boxes, valid = batch
        out = model(x)
        if not valid.any():  # the box was shifted out of every image of the batch
            return out.sum() * 0.0, len(x)
        return self.loss(out[valid], boxes[valid]), int(valid.sum())

    def validation_outputs(self, model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
        x, boxes, _ = batch
        out = model(x)
        return {
            "pred": decode_boxes(out).detach(),
            "target": boxes,
            "loss": (self.loss(out, boxes).detach() * len(x)).reshape(1),
        }

    def validation_metrics(self, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        iou = np.asarray(box_iou(outputs["pred"].cpu().numpy(), outputs["target"].cpu().numpy()))
        return {
            "val_loss": float(outputs["loss"].sum() / max(len(iou), 1)),
            "val_iou": float(iou.mean()),
            "val_iou50": float((iou >= 0.5).mean()),
        }


@torch.no_grad()
def predict_boxes(
    model: torch.nn.Module, spec: PreprocessingSpec, images: np.ndarray, shapes, batch_size: int = 64
) -> np.ndarray:
    """Pixel boxes (N, 4) on each image's original ``(height, width)`` for uint8 images (N, C, S, S)."""
    model = model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = channels_last(normalize(torch.from_numpy(images[start : start + batch_size]), spec))
        out.append(decode_boxes(model(x)).clamp(0, 1).numpy())
    frac = np.concatenate(out) if out else np.zeros((0, 4))
    hw = np.asarray(shapes, dtype=np.float64).reshape(-1, 2)
    return frac * np.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], axis=1)


def write_predictions(loaded, files: list[str | Path], out_dir: str | Path) -> list[dict[str, Any]]:
    """Predict a box for each image; write ``<stem>_box.png`` (the box drawn in red) and return
    ``{"path", "box": [x0, y0, x1, y1], "overlay"}`` per file (``{"path", "error"}`` if unreadable)."""
    if not files:
        raise MedlensError("no input files given; pass one or more images")
    spec, records = loaded.spec, []
    with staged_outputs(out_dir) as tmp:
        for f in map(Path, files):
            try:
                decoded = read_guarded(f, decode_image, f)
            except MedlensError as err:  # this file's row only
                records.append({"path": str(f), "error": row_error(err)})
                continue
            image = decoded.array
            box = predict_boxes(
                loaded.model,
                spec,
                resize_image(image, spec.image_size, spec.channels)[None],
                [image.shape[:2]],
            )[0]
            stem = f.name.split(".")[0] or "image"
            draw_boxes(image, [box]).save(tmp / f"{stem}_box.png")
            records.append(
                {
                    "path": str(f),
                    "box": [round(float(v), 2) for v in box],
                    "overlay": str(Path(out_dir) / f"{stem}_box.png"),
                    **({"read_notes": list(decoded.notes)} if decoded.notes else {}),
                }
            )
    return records


def draw_boxes(image: np.ndarray, boxes: list, colours=((255, 40, 40), (0, 220, 0))):
    """A PIL RGB image with ``boxes`` drawn (first red = prediction, second green = truth)."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(to_uint8(np.asarray(image), 3))
    draw = ImageDraw.Draw(im)
    for box, colour in zip(boxes, colours):
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=colour)
    return im


def with_boxes(manifest: Manifest, *, from_masks: bool) -> tuple[Manifest, int]:
    """The manifest with numeric box columns (cases without a box dropped) and how many were dropped.

    Raises:
        MedlensError: no box columns (and no masks to derive them from), or a box that is not a box.
    """
    df = manifest.df.copy()
    where = manifest.source or manifest.root
    has_columns = all(c in df.columns for c in BOX_COLUMNS)
    if not has_columns or from_masks:
        if "mask" not in df.columns:
            raise MedlensError(
                f"{where} has no box columns x0,y0,x1,y1; give a CSV with image,x0,y0,x1,y1 "
                "columns, or masks with --boxes-from-masks"
            )
        if not from_masks:
            raise MedlensError(
                f"{where} has masks but no boxes; pass --boxes-from-masks to use the box of each "
                "mask's largest connected component"
            )
        df[list(BOX_COLUMNS)] = [_mask_box(manifest, m, c) for m, c in zip(df["mask"], df["case_id"])]
    boxes = df[list(BOX_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    has_box = boxes.notna().all(axis=1).to_numpy()
    bad = (
        has_box
        & ((boxes["x1"] <= boxes["x0"]) | (boxes["y1"] <= boxes["y0"]) | (boxes.min(axis=1) < 0)).to_numpy()
    )
    if bad.any():
        first = np.flatnonzero(bad)[0]
        shown = ", ".join(f"{v:g}" for v in boxes.iloc[first])
        raise MedlensError(
            f"case {df['case_id'].iloc[first]}: box [{shown}] is not a box; need "
            "0 <= x0 < x1 and 0 <= y0 < y1 in pixels"
        )
    df[list(BOX_COLUMNS)] = boxes
    dropped = int((~has_box).sum())
    if dropped == len(df):
        raise MedlensError(f"{where}: no case has a box (every mask is empty or every box cell blank)")
    return manifest.with_df(df[has_box]), dropped


def _mask_box(manifest: Manifest, mask: str, case_id: str) -> list[Any]:
    arr = read_image(manifest.resolve(mask))
    box = mask_to_box(check_pair(arr, arr, case_id))  # the mask checked against itself: values only
    return [np.nan] * 4 if box is None else list(box)


def prepare_detection(manifest: Manifest, cfg, info, progress: bool, fix=None):
    """Boxes from box columns (x0, y0, x1, y1) or, with ``boxes_from_masks``, from each mask's largest
    component; cases without a box are left out (a single-box detector needs an object)."""
    manifest, changes = split_manifest(manifest, cfg, progress, fix)
    manifest, dropped = with_boxes(manifest, from_masks=cfg.boxes_from_masks)
    size = cfg.image_size or info.default_size
    channels = cfg.channels or image_channels(manifest)
    cached = cache_pairs(manifest, size, channels, masks=False, workers=cfg.workers, progress=progress)
    kept = manifest.with_df(manifest.df.iloc[cached.kept])
    boxes = kept.df[list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    inside, skipped = boxes_inside(kept, boxes, cached.shapes)
    skipped = cached.skipped + skipped
    kept = kept.with_df(kept.df.iloc[inside])
    check_nonempty(kept, skipped, manifest)
    data = PreparedData(
        kept,
        cached.images[inside],
        box_masks(boxes[inside], cached.shapes[inside], size),
        [],
        skipped,
        shapes=cached.shapes[inside],
        info={"cases_without_box": dropped},
    )
    check_splits(data)
    mean, std = channel_stats(data.images[data.indices("train")])
    spec = PreprocessingSpec(
        image_size=size,
        channels=channels,
        mean=tuple(mean),
        std=tuple(std),
        task="detection",
        outputs=4,
        intensity=intensity(cfg, 2),
    )
    return data, spec, changes


def boxes_inside(manifest: Manifest, boxes: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Positions of the cases whose box lies inside its image, and a skipped record for each other one.

    A box reaching past the image (by more than a pixel of rounding) was drawn on another image or another
    size; training on it would teach the model a box it cannot see.
    """
    heights, widths = shapes[:, 0].astype(np.float64), shapes[:, 1].astype(np.float64)
    ok = (boxes[:, 2] <= widths + 1) & (boxes[:, 3] <= heights + 1)
    skipped = [
        {
            "path": manifest.paths()[i],
            "case_id": str(manifest.df["case_id"].iloc[i]),
            "kind": "bad-box",
            "reason": f"box [{', '.join(f'{v:g}' for v in boxes[i])}] lies outside the "
            f"{int(widths[i])} x {int(heights[i])} image",
        }
        for i in np.flatnonzero(~ok)
    ]
    return np.flatnonzero(ok), skipped
