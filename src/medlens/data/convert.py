"""Convert a slice dataset into volumes: ``medlens convert slices-to-volumes SRC OUT``.

Each kaggle_3m patient's slices are stacked, in slice order, into one NIfTI image and one mask volume:

- ``OUT/imagesTr/<patient>.nii.gz``: the image, channel-first (C, H, W, N) in memory and stored 4D with the
  channel last (H, W, N, C) as NIfTI prescribes; dtype kept (uint8 for kaggle_3m's 3 channels).
- ``OUT/labelsTr/<patient>.nii.gz``: the mask (H, W, N), uint8 {0, 1}.
- ``OUT/manifest.csv``: one row per patient (``case_id`` = ``patient_id`` = folder name, ``n_slices`` and
  the patient's metadata columns).
- ``OUT/convert.json``: the source and the patients skipped (``{"path", "reason", "kind"}``).

A patient whose slice numbers have a gap (``_1``, ``_2``, ``_4``: slice 3 missing) is skipped and named:
stacked, every slice after the gap would sit one voxel too shallow. kaggle_3m numbers each patient's
slices 1..n, so a missing first slice is a gap too. When every patient has a gap nothing is written.

Voxel (i, j, k) is pixel row i, column j of slice k, so ``volume[..., k]`` is exactly the k-th slice image.
The slices carry no spacing, so the affine is the identity (1 mm voxels, unknown anatomical orientation).
The output is also a valid ``imagesTr``/``labelsTr`` NIfTI folder source. Everything is written in a
temporary folder renamed to OUT at the end: a failure leaves no half-converted dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import track

from medlens.data.ingest import ingest
from medlens.data.manifest import Manifest
from medlens.data.seg_sources import check_pair, load_kaggle_3m
from medlens.errors import MedlensError, UnreadableImageError, did_you_mean
from medlens.io import read_image
from medlens.io.guard import accepts_image_limit
from medlens.io.volumes import write_nifti
from medlens.utils.files import atomic_dir, check_output_path, write_json, write_marker

PER_SLICE = ("case_id", "image", "mask", "slice_index")


@accepts_image_limit
def slices_to_volumes(
    src_root: str | Path, out_dir: str | Path, *, progress: bool = True, overwrite: bool = False
) -> Manifest:
    """Stack each kaggle_3m patient's slices into NIfTI image and mask volumes.

    Args:
        src_root: the kaggle_3m folder (or its parent).
        out_dir: output folder (must not exist unless ``overwrite``).
        progress: show a progress bar.
        overwrite: replace an existing ``out_dir``, only one medlens wrote (it holds a ``.medlens-run``
        marker,
            or is a convert output from before markers) or an empty one.

    Returns:
        The manifest of the volumes, rooted at ``out_dir`` (also saved as ``out_dir/manifest.csv``).

    Raises:
        MedlensError: a missing mask, a mask that does not fit its slice, or slices of different sizes
            within a patient, naming the case; every patient missing a slice; ``out_dir`` is then left
            untouched. A patient missing a slice among whole ones is skipped and listed in
            ``out_dir/convert.json``.
    """
    out_dir = Path(out_dir)
    # a file, the source itself, or a folder medlens did not write: refused before anything is read
    check_output_path(out_dir, sources=[src_root], overwrite=overwrite, option="OUTPUT", what="output folder")
    slices = load_kaggle_3m(src_root)
    patients = list(dict.fromkeys(slices.df["patient_id"]))
    rows, skipped = [], []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_marker(tmp, "volumes")
        for patient in _track(patients, progress):
            group = slices.df[slices.df["patient_id"] == patient].sort_values("slice_index", kind="stable")
            if gap := _gap_record(slices, group):
                skipped.append(gap)
                continue
            image, mask = _stack_patient(slices, group, patient)
            _write_pair(tmp, patient, image, mask)
            meta = group.iloc[0].drop(labels=[c for c in PER_SLICE if c in group.columns]).to_dict()
            rows.append(
                {
                    "case_id": patient,
                    "patient_id": patient,
                    "split": meta.pop("split", ""),
                    "image": f"imagesTr/{patient}.nii.gz",
                    "mask": f"labelsTr/{patient}.nii.gz",
                    "n_slices": len(group),
                    **{k: v for k, v in meta.items() if k != "patient_id"},
                }
            )
        if not rows:
            first = skipped[0]
            raise MedlensError(
                f"no patient of {slices.root} can be stacked: each misses a slice (e.g. "
                f"{Path(first['path']).name}: {first['reason']})"
            )
        manifest = Manifest(pd.DataFrame(rows), tmp, source=f"slices-to-volumes of {slices.root}")
        manifest.save(tmp / "manifest.csv")
        write_json(tmp / "convert.json", {"source": str(slices.root), "n": len(rows), "skipped": skipped})
    return Manifest(manifest.df, out_dir, source=str(out_dir / "manifest.csv"))


GAP_HINT = "stacking over the gap would put every later slice at the wrong depth; restore the slice"


def _gap_record(slices: Manifest, group: pd.DataFrame) -> dict[str, str] | None:
    """The skipped-patient record of a patient whose slice numbers have a gap (None when whole)."""
    gap = slice_gap(group["slice_index"].tolist())
    if gap is None:
        return None
    folder = Path(slices.resolve(group["image"].iloc[0])).parent
    return {"path": str(folder), "reason": f"{gap}; {GAP_HINT}", "kind": "missing"}


def slice_gap(numbers: list[int]) -> str | None:
    """What is missing from a patient's slice numbers 1..n ("slice 3 of 20 missing"), None when whole.

    Args:
        numbers: the patient's slice numbers (``slice_index``), in any order.
    """
    if not numbers:
        return None
    last = max(numbers)
    missing = sorted(set(range(1, last + 1)) - set(numbers))
    if not missing:
        return None
    text = f"slice {missing[0]} of {last} missing"
    rest = missing[1:]
    if rest:
        contiguous = rest == list(range(rest[0], rest[-1] + 1))
        span = f"{rest[0]}-{rest[-1]}" if contiguous else ", ".join(map(str, rest))
        text += f" (and {len(rest)} more: {span})"
    return text


def _stack_patient(slices: Manifest, group: pd.DataFrame, patient: str) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for row in group.itertuples(index=False):
        image = read_image(slices.resolve(row.image))
        masks.append(check_pair(image, read_image(slices.resolve(row.mask)), row.case_id))
        images.append(image if image.ndim == 3 else image[..., np.newaxis])
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise MedlensError(
            f"patient {patient}: slices have different sizes {shapes}; cannot stack them into "
            "a volume (resize them to one size first)"
        )
    image = np.stack(images, axis=2)  # (H, W, N, C)
    return np.moveaxis(image, -1, 0), np.stack(masks, axis=-1)


def _write_pair(folder: Path, patient: str, image: np.ndarray, mask: np.ndarray) -> None:
    write_nifti(image, np.eye(4), folder / "imagesTr" / f"{patient}.nii.gz")
    write_nifti(mask.astype(np.uint8), np.eye(4), folder / "labelsTr" / f"{patient}.nii.gz")


def _track(items: list, progress: bool):
    if not progress:
        return items

    return track(items, description="stacking slices", transient=True)


@accepts_image_limit
def masks_to_labels(
    src: str | Path, output_csv: str | Path, *, positive: str = "tumour", negative: str = "notumor"
) -> Manifest:
    """Label each image of an image/mask source by whether its mask has foreground.

    The result trains the classifier gate of the two-stage pipeline (``medlens predict --gate``): the same
    patients, slices and splits, a ``label`` column instead of ``mask``.

    Args:
        src: image/mask pairs (kaggle_3m folders, a CSV with image,mask columns).
        output_csv: the labelled CSV to write (paths relative to its folder).
        positive: label of images whose mask has foreground.
        negative: label of images whose mask is empty.

    Raises:
        MedlensError: a source without masks, a mask that cannot be read or holds unexpected values.
    """

    if positive == negative:
        raise MedlensError(f"--positive and --negative must differ, both are {positive!r}")
    check_output_path(
        output_csv, sources=[src], kind="file", option="OUTPUT", what="labelled CSV", marker="manifest"
    )
    manifest = ingest(src, require_labels=False)
    if "mask" not in manifest.df.columns:
        raise MedlensError(
            f"{src} has no masks; give image/mask pairs (kaggle_3m folders or a CSV image,mask)"
        )
    labels = []
    for row in manifest.df.itertuples(index=False):
        try:
            mask = read_image(manifest.resolve(row.mask))
        except UnreadableImageError as err:
            raise MedlensError(f"case {row.case_id}: mask {err.path} cannot be read ({err.reason})") from err
        labels.append(positive if check_pair(mask, mask, row.case_id).any() else negative)
    df = manifest.df.drop(columns=["mask"]).assign(label=labels)
    labelled = Manifest(df, manifest.root, source=f"labels from masks of {src}")
    labelled.save(output_csv)
    return labelled


#: ``medlens convert KIND``: the dataset conversions, by command name.
CONVERSIONS = {"slices-to-volumes": slices_to_volumes, "masks-to-labels": masks_to_labels}


def convert(kind: str, src: str | Path, output: str | Path, **options: Any) -> Manifest:
    """Run one conversion by its command name (``slices-to-volumes`` or ``masks-to-labels``).

    Args:
        kind: the conversion, as ``medlens convert KIND`` names it.
        src: the dataset to convert.
        output: the folder (slices-to-volumes) or CSV (masks-to-labels) to write.
        **options: that conversion's keyword options.

    Returns:
        The manifest of what was written.
    """
    if kind not in CONVERSIONS:
        raise MedlensError(
            f"unknown conversion {kind!r}.{did_you_mean(kind, list(CONVERSIONS))} "
            f"Choose one of {', '.join(CONVERSIONS)}"
        )
    return CONVERSIONS[kind](src, output, **options)
