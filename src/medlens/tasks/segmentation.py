"""Segmentation: Dice + cross-entropy loss, per-patient Dice while training, masks out (PNG or NIfTI).

2D batches are ``(images uint8 (N, C, S, S), masks uint8 (N, S, S), patient codes (N,))``; the image and its
mask move through one drawn random affine (nearest neighbour for the mask). 3D batches come from
:mod:`medlens.tasks.volumes` (already normalised patches while training, whole volumes for validation,
predicted with sliding-window inference). Metrics treat every non-background label as foreground.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medlens.data.augment import augment_pair
from medlens.data.cache import resize_image, to_uint8
from medlens.data.manifest import Manifest
from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.io.failures import read_guarded, row_error
from medlens.io.images import decode_image
from medlens.io.volumes import is_nifti_file
from medlens.tasks.base import Task, channels_last, normalize
from medlens.tasks.gate import load_gate
from medlens.tasks.localise import BINARY, prepare_segmentation
from medlens.tasks.registry import register_task
from medlens.tasks.reporting import localisation_section, worst_cases_by_iou, worst_patients
from medlens.tasks.volumes import prepare_volume_batch, write_volume_prediction
from medlens.utils.staging import staged_outputs

BACKGROUND = "background"


#: A lesion covering this share of the image (or volume) gets the full size part of the triage score.
LESION_FULL_FRACTION = 0.02


@register_task("segmentation")
class SegmentationTask(Task):
    """Semantic segmentation (2D slices or 3D volumes): data, loop hooks, masks out, report section.

    Evaluation is the ``segmentation`` evaluator of :mod:`medlens.evaluation.seg_evaluate` (Dice per patient
    with bootstrap intervals and contour figures come from the evaluation layer above this one).

    Args:
        class_names: label names, background first.
        spatial_dims: 2 or 3.
        patch_size: 3D training patch and sliding-window size.
        sw_batch_size: windows per forward pass of sliding-window inference.
        overlap: sliding-window overlap.
    """

    name = "segmentation"
    default_model = "unet"
    monitor = "val_dice"
    #: 2D masks cost activations at full resolution; 3D validation runs one whole volume at a time.
    val_batch = 32
    needs_labels = False
    evaluator = "segmentation"
    explainer = "segmentation"
    prediction_columns = ("foreground", "tumour probability", "mask")

    def __init__(
        self,
        class_names: list[str] = BINARY,
        spatial_dims: int = 2,
        patch_size: tuple[int, ...] | None = None,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
    ):
        from monai.losses import DiceCELoss  # deferred: MONAI is heavy, loaded only to train

        self.class_names = list(class_names)
        self.spatial_dims = spatial_dims
        self.patch_size = tuple(patch_size) if patch_size else None
        self.sw_batch_size, self.overlap = sw_batch_size, overlap
        # Batch Dice (nnU-Net): pooled over the batch, so slices without foreground do not dominate.
        self.criterion = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)

    # -- whole-path hooks ------------------------------------------------------------------------------
    def prepare(self, source, cfg, info, progress: bool, fix=None):
        """2D slices or 3D volumes with patient-grouped validation (:mod:`medlens.tasks.localise`)."""
        (data, spec), changes = prepare_segmentation(self.resolve(source), cfg, info, progress, fix)
        return data, spec, changes

    def check_evaluation_manifest(self, manifest: Manifest) -> None:
        if "mask" not in manifest.df.columns:
            raise MedlensError(
                f"{manifest.source or manifest.root} has no masks to compare with; use `medlens predict`"
            )

    def summary_model(self, num_classes: int, head: str, freeze_backbone: bool) -> tuple[int, dict[str, Any]]:
        return len(BINARY), {}

    def make_loop_task(self, cfg, data, spec: PreprocessingSpec) -> SegmentationTask:
        return SegmentationTask(list(spec.class_names), spec.spatial_dims, spec.patch_size)

    def report_section(self, summary: dict[str, Any]) -> dict[str, Any]:
        table = worst_patients(summary) if summary.get("per_patient") else worst_cases_by_iou(summary)
        return localisation_section(summary, table)

    def write_predictions(
        self, loaded, files: list, out: Path, *, gate=None, negative_class=None, gate_threshold: float = 0.5
    ) -> list[dict[str, Any]]:
        """Masks and overlays (see :func:`write_predictions`); ``gate`` is a classification run."""
        gate_obj = None if gate is None else load_gate(gate, negative_class, gate_threshold)
        return write_predictions(loaded, files, out, gate=gate_obj)

    def triage_score(self, record: dict[str, Any], urgent: dict[str, float] | None) -> tuple[float, str]:
        """0 without a lesion; with one, 0.5 for its presence plus up to 0.5 by its size (full at
        ``LESION_FULL_FRACTION`` of the image or volume)."""
        fraction = float(record.get("lesion_fraction") or 0.0)
        if fraction <= 0:
            return 0.0, "no lesion segmented"
        size = min(1.0, fraction / LESION_FULL_FRACTION)
        detail = (
            f"lesion {100 * fraction:.2f} % of the {'volume' if record.get('spatial_dims') == 3 else 'image'}"
        )
        if record.get("components"):
            detail += f", {record['components']} component(s)"
        return 0.5 + 0.5 * size, detail

    def prediction_row(self, record: dict[str, Any]) -> list[str]:
        area = record.get("foreground_pixels", record.get("foreground_voxels", 0))
        p = record.get("tumour_probability")
        return [str(area), "" if p is None else f"{p:.3f}", record["mask"]]

    # -- loop hooks -----------------------------------------------------------------------------------
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits.float(), target.unsqueeze(1).long())

    def prepare_batch(self, batch, spec: PreprocessingSpec, augment=None, gen: torch.Generator | None = None):
        if self.spatial_dims == 3:
            return prepare_volume_batch(batch, augment, gen)

        x, m, groups = batch
        x = normalize(x, spec)
        if augment is not None:
            x, m = augment_pair(x, m, augment, gen)
        return channels_last(x), m.long(), groups

    def training_loss(self, model: torch.nn.Module, batch) -> tuple[torch.Tensor, int]:
        x, m = batch[0], batch[1]
        return self.loss(model(x), m), len(x)

    def infer(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Logits for a prepared batch: one forward pass (2D) or sliding windows over whole volumes (3D)."""
        if self.spatial_dims == 2:
            return model(x)
        from monai.inferers import sliding_window_inference  # deferred: MONAI is heavy

        return sliding_window_inference(
            x, self.patch_size, self.sw_batch_size, model, overlap=self.overlap, mode="gaussian"
        )

    def validation_outputs(self, model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
        x, m, groups = batch
        logits = self.infer(model, x)
        p, t = logits.argmax(1) > 0, m > 0
        dims = tuple(range(1, p.dim()))
        return {
            "inter": (p & t).sum(dims),
            "pred": p.sum(dims),
            "true": t.sum(dims),
            "group": groups,
            "loss": (self.loss(logits, m).detach() * len(x)).reshape(1),
            "n": torch.tensor([len(x)], device=x.device),
        }

    def validation_metrics(self, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        """``val_dice``: mean over patients of the Dice of their pooled voxels; ``val_dice_case``: mean over
        cases (both-empty cases score 1)."""
        o = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in outputs.items()}
        groups = o["group"].astype(np.int64)
        inter, total = (np.bincount(groups, weights=w) for w in (o["inter"], o["pred"] + o["true"]))
        present = np.bincount(groups) > 0
        per_patient = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)[present]
        case_total = o["pred"] + o["true"]
        per_case = np.where(case_total > 0, 2 * o["inter"] / np.maximum(case_total, 1), 1.0)
        return {
            "val_loss": float(o["loss"].sum() / max(o["n"].sum(), 1)),
            "val_dice": float(per_patient.mean()),
            "val_dice_case": float(per_case.mean()),
        }


# -- 2D inference ----------------------------------------------------------------------------------------
@torch.no_grad()
def predict_masks(
    model: torch.nn.Module,
    spec: PreprocessingSpec,
    images: np.ndarray,
    shapes: np.ndarray | list | None = None,
    batch_size: int = 32,
    on_probs=None,
) -> list[np.ndarray]:
    """Label maps for uint8 images (N, C, S, S) preprocessed like training, at each original size.

    Class probabilities are resized (bilinear) to the image's original ``(height, width)`` before the
    argmax, so a model trained at 128 px answers a 256 px image with a smooth 256 px mask. ``on_probs(i,
    probs)``, when given, sees each case's (K, H, W) probabilities (e.g. to sample them for calibration).
    """
    model = model.eval()
    out: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        x = channels_last(normalize(torch.from_numpy(images[start : start + batch_size]), spec))
        probs = torch.softmax(model(x).float(), dim=1)
        for i in range(len(probs)):
            p = probs[i : i + 1]
            shape = None if shapes is None else tuple(int(s) for s in shapes[start + i])
            if shape is not None and shape != tuple(p.shape[-2:]):
                p = F.interpolate(p, size=shape, mode="bilinear", align_corners=False)
            if on_probs is not None:
                on_probs(start + i, p[0].numpy())
            out.append(p[0].argmax(0).to(torch.uint8).numpy())
    return out


# -- prediction writer -----------------------------------------------------------------------------------
def write_predictions(
    loaded, files: list[str | Path], out_dir: str | Path, *, gate: Any = None
) -> list[dict[str, Any]]:
    """Segment each file and write ``<stem>_mask.png`` (2D, 0/255) or ``<stem>_mask.nii.gz`` (3D, with the
    input's affine) plus ``<stem>_overlay.png``, all at once at the end (nothing half-written).

    Args:
        loaded: a segmentation :class:`~medlens.models.checkpoint.LoadedModel`.
        files: images (2D models), NIfTI files or DICOM series folders (3D models).
        out_dir: folder for the outputs (created; existing files of the same name are replaced).
        gate: an optional :class:`~medlens.tasks.gate.Gate`; images it calls negative get an empty mask.

    Returns:
        One record per file: ``{"path", "mask", "overlay", "foreground_pixels", ...}``, or
        ``{"path", "error"}`` for an unreadable image.
    """
    if not files:
        raise MedlensError("no input files given; pass one or more images (or volumes) to segment")
    with staged_outputs(out_dir) as tmp:
        if loaded.spec.spatial_dims == 3:
            if gate is not None:
                raise MedlensError("--gate classifies 2D slices; it cannot gate a 3D segmentation model")
            return [_row(write_volume_prediction, loaded, Path(f), tmp, Path(out_dir)) for f in files]
        return [_row(_write_image_prediction, loaded, Path(f), tmp, Path(out_dir), gate) for f in files]


def _row(write, loaded, path: Path, *args) -> dict[str, Any]:
    """One file's record; a file that cannot be read (or is not what the model reads) costs its row only."""
    try:
        return write(loaded, path, *args)
    except MedlensError as err:
        return {"path": str(path), "error": row_error(err)}


def _write_image_prediction(loaded, path: Path, tmp: Path, final: Path, gate) -> dict[str, Any]:
    from PIL import Image

    if is_nifti_file(path) or path.is_dir():
        raise MedlensError(
            f"{path}: model {loaded.name} segments 2D images; give PNG/JPEG/TIFF/DICOM images "
            "(or train a 3D model on volumes)"
        )
    decoded = read_guarded(path, decode_image, path)
    image = decoded.array
    spec = loaded.spec
    record: dict[str, Any] = {"path": str(path)}
    if decoded.notes:  # e.g. frame 1 of a multi-frame DICOM
        record["read_notes"] = list(decoded.notes)
    if gate is not None:
        record.update(gate.decide(image))
    shape = image.shape[:2]
    if gate is None or record["segmented"]:
        mask = predict_masks(
            loaded.model, spec, resize_image(image, spec.image_size, spec.channels)[None], [shape]
        )[0]
    else:
        mask = np.zeros(shape, dtype=np.uint8)
    stem = _unique_stem(path, tmp)
    values = mask * 255 if len(spec.class_names) == 2 else mask
    Image.fromarray(values.astype(np.uint8)).save(tmp / f"{stem}_mask.png")
    Image.fromarray(overlay_rgb(image, mask)).save(tmp / f"{stem}_overlay.png")
    record.update(
        {
            "mask": str(final / f"{stem}_mask.png"),
            "overlay": str(final / f"{stem}_overlay.png"),
            "foreground_pixels": int((mask > 0).sum()),
        }
    )
    return record


def _unique_stem(path: Path, folder: Path) -> str:
    """The file's stem, numbered when two inputs share a name."""
    stem = path.name.split(".")[0] or "image"
    candidate, i = stem, 1
    while any(folder.glob(f"{candidate}_mask.*")):
        i += 1
        candidate = f"{stem}-{i}"
    return candidate


def overlay_rgb(image: np.ndarray, mask: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """An RGB uint8 picture of ``image`` with the predicted outline in red (and the true one in green)."""
    from scipy import ndimage  # deferred: scipy is heavy, needed only for overlays

    rgb = to_uint8(np.asarray(image), 3).copy()
    for m, colour in ((truth, (0, 220, 0)), (mask, (255, 40, 40))):
        if m is None:
            continue
        m = np.asarray(m) > 0
        edge = m & ~ndimage.binary_erosion(m, iterations=1)
        rgb[edge] = colour
    return rgb
