"""3D segmentation data: resample, normalise, sample patches, flip, and predict whole volumes.

- Preprocessing (:func:`preprocess_volume`): optional resampling to the spec's target spacing (trilinear for
  images, nearest for masks), then each channel standardised over its non-zero voxels (the rule of MONAI's
  ``NormalizeIntensity(nonzero=True, channel_wise=True)`` and nnU-Net for MRI), so volumes of any scanner
  scale train together.
- Training (:class:`PatchDataset`): volumes padded to at least the patch, then MONAI's
  ``RandCropByPosNegLabeld`` draws ``samples_per_volume`` patches per volume and epoch, half centred on
  foreground, half on background; every patch has the common patch shape, so patches batch together.
- Inference (:func:`predict_volume`): MONAI ``sliding_window_inference`` with Gaussian blending over the
  preprocessed volume; the logits are resampled back to the input grid before the argmax, so the mask has the
  input's shape and is written with the input's affine.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from medlens.data.manifest import Manifest
from medlens.data.seg_sources import check_pair
from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.dicom_series import read_dicom_series, read_multiframe_volume
from medlens.io.failures import read_guarded, reader_boundary
from medlens.io.images import DICOM_SUFFIXES, is_dicom_file
from medlens.io.volumes import is_nifti_file, read_volume, write_nifti
from medlens.tasks.base import standardize_nonzero
from medlens.utils.progress import track

SW_BATCH_SIZE = 4
OVERLAP = 0.25


def resampled_shape(shape, spacing, target) -> tuple[int, ...]:
    """Voxel counts after resampling ``shape`` from ``spacing`` to ``target`` spacing (same field of view)."""
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target))


def preprocess_volume(volume: np.ndarray, spacing, spec: PreprocessingSpec) -> torch.Tensor:
    """A channel-first volume (C, X, Y, Z) → float32 tensor resampled to ``spec.spacing`` and normalised."""
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    if spec.spacing is not None:
        size = resampled_shape(x.shape[1:], spacing, spec.spacing)
        if size != tuple(x.shape[1:]):
            x = F.interpolate(x[None], size=size, mode="trilinear", align_corners=False)[0]
    return normalize_nonzero(x)


def normalize_nonzero(x: torch.Tensor) -> torch.Tensor:
    """Standardise each channel of (C, *spatial) over its non-zero voxels (see
    :func:`medlens.tasks.base.standardize_nonzero`)."""
    return standardize_nonzero(x, first_spatial_dim=1)


def resample_labels(labels: np.ndarray, size: tuple[int, ...]) -> torch.Tensor:
    """A label volume (X, Y, Z) → uint8 tensor of ``size`` (nearest neighbour)."""
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.uint8))
    if tuple(y.shape) != tuple(size):
        y = F.interpolate(y[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.uint8)
    return y


@reader_boundary
def read_any_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A NIfTI file or a DICOM series folder → ``(volume (C, X, Y, Z), affine, spacing)``."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if path.is_file() and (path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path)):
        return read_multiframe_volume(path)  # a multi-frame file is a volume where a 3D model wants one
    if not is_nifti_file(path):
        raise MedlensError(
            f"{path}: a 3D model needs a NIfTI volume (.nii, .nii.gz), a DICOM series folder or "
            "a multi-frame DICOM file"
        )
    return read_volume(path)


@dataclass
class VolumeData:
    """Preprocessed volumes of a manifest, with the per-split loaders of the shared loop."""

    manifest: Manifest  # readable cases only, aligned with ``images``
    images: list[torch.Tensor]  # float32 (C, X, Y, Z), preprocessed
    labels: list[torch.Tensor]  # uint8 (X, Y, Z), on the preprocessed grid
    spacings: list[tuple[float, float, float]]
    classes: list[str]
    patch_size: tuple[int, int, int]
    samples_per_volume: int = 4
    skipped: list[dict] = field(default_factory=list)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.manifest.df["split"].to_numpy() == split)

    def loader(self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0) -> DataLoader:
        """Training: patches (``batch_size`` patches per step); otherwise whole volumes one at a time."""
        idx = self.indices(split)
        if not shuffle:
            return DataLoader(_WholeVolumes(self, idx), batch_size=1, shuffle=False, num_workers=0)
        per_volume = self.samples_per_volume
        dataset = PatchDataset(
            [self.images[i] for i in idx], [self.labels[i] for i in idx], self.patch_size, per_volume, seed
        )
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            dataset,
            batch_size=max(1, batch_size // per_volume),
            shuffle=True,
            generator=gen,
            num_workers=0,
            collate_fn=collate_patches,
        )


class _WholeVolumes(Dataset):
    def __init__(self, data: VolumeData, idx: np.ndarray):
        self.data, self.idx = data, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int):
        j = int(self.idx[i])
        return self.data.images[j], self.data.labels[j], torch.tensor(i)


class PatchDataset(Dataset):
    """``samples_per_volume`` random patches per volume (RandCropByPosNegLabeld, pos = neg = 1)."""

    def __init__(
        self, images: list[torch.Tensor], labels: list[torch.Tensor], patch_size, samples: int, seed: int
    ):
        # deferred: MONAI is heavy, loaded only to sample training patches
        from monai.transforms import FgBgToIndicesd, RandCropByPosNegLabeld, SpatialPad

        pad = SpatialPad(patch_size)
        self.items = []
        for image, label in zip(images, labels):
            item = {"image": torch.as_tensor(pad(image)), "label": torch.as_tensor(pad(label[None]))}
            self.items.append(FgBgToIndicesd("label", fg_postfix="_fg", bg_postfix="_bg")(item))
        self.crop = RandCropByPosNegLabeld(
            ["image", "label"],
            "label",
            patch_size,
            pos=1,
            neg=1,
            num_samples=samples,
            fg_indices_key="label_fg",
            bg_indices_key="label_bg",
        )
        self.crop.set_random_state(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no foreground voxels": background patches only, as intended
            patches = self.crop(self.items[i])
        return [
            (torch.as_tensor(p["image"]), torch.as_tensor(p["label"])[0].to(torch.uint8)) for p in patches
        ]


def collate_patches(batch: list[list[tuple[torch.Tensor, torch.Tensor]]]):
    """Flatten the per-volume patch lists into one batch ``(images, labels, groups)``."""
    flat = [p for patches in batch for p in patches]
    return (
        torch.stack([p[0] for p in flat]),
        torch.stack([p[1] for p in flat]),
        torch.zeros(len(flat), dtype=torch.long),
    )


def prepare_volume_batch(batch, augment=None, gen: torch.Generator | None = None):
    """Random flips along each axis (image and mask together) and a small intensity scale/shift."""
    x, y, groups = batch
    if augment is None:
        return x, y.long(), groups
    n = x.shape[0]
    flips = torch.rand(n, 3, generator=gen) < 0.5
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * augment.contrast
    shift = (torch.rand(n, generator=gen) * 2 - 1) * augment.brightness
    xs, ys = [], []
    for i in range(n):
        axes = [a + 1 for a in range(3) if flips[i, a]]
        xi, yi = (x[i].flip([a for a in axes]), y[i].flip([a - 1 for a in axes])) if axes else (x[i], y[i])
        xs.append(xi * scale[i].item() + shift[i].item())
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys).long(), groups


def default_patch_size(
    shapes: list[tuple[int, ...]], multiple: int, wanted=(96, 96, 32)
) -> tuple[int, int, int]:
    """A patch no larger than needed: each side ``wanted`` or the largest volume's side, rounded up to
    ``multiple`` (what the network's downsampling needs)."""
    biggest = np.max(np.array(shapes), axis=0)
    return tuple(int(math.ceil(min(w, b) / multiple) * multiple) for w, b in zip(wanted, biggest))


def load_volumes(
    manifest: Manifest, spec: PreprocessingSpec, *, progress: bool = True, agree_channels: bool = False
) -> tuple[list, list, list, Manifest, list[dict]]:
    """Read, check and preprocess every image/mask volume of ``manifest``.

    A volume that cannot be read (truncated, empty, not 3D or 4D, NaN voxels ...) is reported in ``skipped``
    with its case and left out, wherever it stands in the manifest.

    Args:
        manifest: the cases (image and mask columns).
        spec: how to preprocess; a volume of another channel count is skipped, unless ``agree_channels``.
        progress: show a progress bar.
        agree_channels: training, where the data sets the channel count: the count most volumes have wins,
            and a volume with another count is reported and skipped (see :func:`keep_common_channels`).

    Returns:
        ``(images, labels, spacings, kept manifest, skipped)``.

    Raises:
        MedlensError: a mask that does not fit its image or holds unexpected values, naming the case.
    """
    images, labels, spacings, kept, skipped = [], [], [], [], []
    rows = list(manifest.df.itertuples(index=False))
    for pos, row in enumerate(
        track(rows, total=len(rows), description="Reading volumes", disable=not progress)
    ):
        try:
            image, mask, spacing = read_volume_case(manifest, row, spec, check_channels=not agree_channels)
        except UnreadableImageError as err:
            skipped.append(err.record(case_id=row.case_id))
            continue
        x = preprocess_volume(image, spacing, spec)
        images.append(x)
        labels.append(resample_labels(mask, tuple(x.shape[1:])))
        spacings.append(spacing)
        kept.append(pos)
    if agree_channels:
        keep = keep_common_channels([(rows[p], images[i]) for i, p in enumerate(kept)], manifest, skipped)
        images, labels, spacings = ([v[i] for i in keep] for v in (images, labels, spacings))
        kept = [kept[i] for i in keep]
    return images, labels, spacings, manifest.with_df(manifest.df.iloc[kept]), skipped


#: Channels a volume may have (the preprocessing spec's limit): more are time points, not channels.
MAX_CHANNELS = 64


def keep_common_channels(
    cases: list[tuple[Any, torch.Tensor]], manifest: Manifest, skipped: list
) -> list[int]:
    """Positions of the ``(row, volume)`` cases whose channel count most volumes share; the others are added
    to ``skipped`` (kind ``bad-shape``), each named with its own count and the common one.

    Raises:
        MedlensError: no count is shared by more volumes than any other (nothing says which is right).
    """
    from collections import Counter

    counts = Counter(x.shape[0] for _, x in cases if x.shape[0] <= MAX_CHANNELS)
    ranked = counts.most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        firsts = {c: next(row.case_id for row, x in cases if x.shape[0] == c) for c, _ in ranked}
        raise MedlensError(
            f"the volumes of {manifest.source or manifest.root} disagree on their channels: "
            + ", ".join(f"{n} have {c} (first: case {firsts[c]})" for c, n in ranked)
            + "; every volume needs the same channels (one 3D image, or a 4D image with channels last)"
        )
    common = ranked[0][0] if ranked else None
    keep = []
    for i, (row, x) in enumerate(cases):
        if x.shape[0] == common:
            keep.append(i)
            continue
        why = f"more than {MAX_CHANNELS}: time points?" if x.shape[0] > MAX_CHANNELS else "a 4D volume"
        reason = (
            f"case {row.case_id}: {x.shape[0]} channel(s) ({why}) where {counts.get(common, 0)} other "
            f"volume(s) have {common}; every volume needs the same channels"
        )
        skipped.append(
            {
                "path": str(manifest.resolve(row.image)),
                "reason": reason,
                "kind": "bad-shape",
                "case_id": row.case_id,
            }
        )
    return keep


def read_volume_case(
    manifest: Manifest, row, spec: PreprocessingSpec, *, check_channels: bool = True
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Read one manifest row's image volume and mask: ``(image (C, X, Y, Z), labels (X, Y, Z), spacing)``.

    ``check_channels=False`` leaves the channel count to the caller (training: :func:`keep_common_channels`).

    Raises:
        UnreadableImageError: the image or its mask cannot be read, or the image has another channel count
            than ``spec``'s (callers report the case and skip it).
        MedlensError: the mask does not fit the image or holds unexpected values, naming the case.
    """
    path = manifest.resolve(row.image)
    image, _, spacing = read_volume(path)
    if check_channels and image.shape[0] != spec.channels:  # one odd case: reported and skipped (evaluate)
        raise UnreadableImageError(
            str(path),
            f"case {row.case_id}: {image.shape[0]} channel(s) but the model takes "
            f"{spec.channels}; every volume needs the same channels",
            kind="bad-shape",
        )
    try:
        mask = read_volume(manifest.resolve(row.mask))[0]
    except UnreadableImageError as err:  # a broken mask file: reported and skipped with its case
        raise UnreadableImageError(
            err.path, f"mask of case {row.case_id}: {err.reason}", kind=err.kind
        ) from err
    return (
        image,
        check_pair(image, mask, row.case_id, spatial_dims=3, num_classes=len(spec.class_names)),
        spacing,
    )


@torch.inference_mode()
def predict_volume(
    model: torch.nn.Module,
    spec: PreprocessingSpec,
    volume: np.ndarray,
    spacing,
    sw_batch_size: int = SW_BATCH_SIZE,
    overlap: float = OVERLAP,
) -> np.ndarray:
    """Label map (X, Y, Z) on the input's own grid for a raw channel-first volume (C, X, Y, Z)."""
    from monai.inferers import sliding_window_inference  # deferred: MONAI is heavy

    x = preprocess_volume(volume, spacing, spec)[None]
    logits = torch.as_tensor(
        sliding_window_inference(
            x, spec.patch_size, sw_batch_size, model.eval(), overlap=overlap, mode="gaussian"
        )
    )
    size = tuple(volume.shape[1:])
    if logits.shape[1] == 2:
        # Binary: argmax is the sign of (foreground - background), and resampling is linear, so only that
        # one difference map needs resampling to the input grid (half the work, same mask).
        margin = logits[:, 1:] - logits[:, :1]
        if tuple(margin.shape[2:]) != size:
            margin = F.interpolate(margin, size=size, mode="trilinear", align_corners=False)
        return (margin[0, 0] > 0).to(torch.uint8).numpy()
    if tuple(logits.shape[2:]) != size:
        logits = F.interpolate(logits, size=size, mode="trilinear", align_corners=False)
    return logits[0].argmax(0).to(torch.uint8).numpy()


def write_volume_prediction(loaded, path: Path, tmp: Path, final: Path) -> dict[str, Any]:
    """Segment one NIfTI volume or DICOM series; write ``<stem>_mask.nii.gz`` with the input's affine and an
    overlay PNG of the slice with the most foreground."""
    from PIL import Image

    # deferred: import cycle (segmentation imports this module)
    from medlens.tasks.segmentation import overlay_rgb

    volume, affine, spacing = read_guarded(path, read_any_volume, path)
    if volume.shape[0] != loaded.spec.channels:
        if path.is_dir() and volume.shape[0] > loaded.spec.channels:
            raise MedlensError(
                f"{path}: the series holds {volume.shape[0]} volumes of the same slices (time "
                f"points or repeats), but model {loaded.name} takes {loaded.spec.channels} "
                "channel(s); predict on a folder that holds one of them"
            )
        raise MedlensError(
            f"{path}: {volume.shape[0]} channel(s), but model {loaded.name} was trained on "
            f"{loaded.spec.channels}"
        )
    mask = predict_volume(loaded.model, loaded.spec, volume, spacing)
    stem = path.name.split(".")[0] or "volume"
    write_nifti(mask, affine, tmp / f"{stem}_mask.nii.gz")
    k = int(np.argmax(mask.reshape(-1, mask.shape[-1]).sum(0))) if mask.any() else mask.shape[-1] // 2
    plane = volume[min(1, volume.shape[0] - 1), :, :, k] if volume.shape[0] == 3 else volume[0, :, :, k]
    Image.fromarray(overlay_rgb(plane, mask[:, :, k])).save(tmp / f"{stem}_overlay.png")
    return {
        "path": str(path),
        "mask": str(final / f"{stem}_mask.nii.gz"),
        "overlay": str(final / f"{stem}_overlay.png"),
        "foreground_voxels": int((mask > 0).sum()),
        "shape": list(mask.shape),
        "spacing": [float(s) for s in spacing],
    }
