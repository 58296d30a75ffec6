"""`medlens explain RUN --localisation SEG_SRC`: does a classifier's attribution map point at the lesion?

A classification run (e.g. tumour / no tumour on LGG slices, made with `medlens convert masks-to-labels`) is
explained on the slices of a segmentation source that hold a lesion, restricted to the patients of the run's
validation split (never those it trained on). The maps are scored against the true masks
(:mod:`medlens.explaining.faithfulness`): pointing game, energy inside the mask and deletion AUC, each with
a 95 % interval over patients, next to the image-centre and random-foreground-point baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.data.cache import cache_pairs
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError
from medlens.explaining.cam import attribution_maps, cam_layer
from medlens.explaining.faithfulness import localisation_report
from medlens.explaining.foreground import foreground_mask
from medlens.tasks.base import channels_last, normalize
from medlens.tasks.classification import default_urgent
from medlens.tasks.registry import get_task

BATCH = 32


def localisation(
    loaded,
    run_dir: Path,
    seg_source: str | Path,
    *,
    methods: list[str],
    target: str | None = None,
    split: str = "val",
    n_bootstrap: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """The ``localisation`` block of explain.json for each method (see the module docstring)."""
    if loaded.spec.task != "classification":
        raise MedlensError(
            f"--localisation scores a classifier's maps; {run_dir} is a {loaded.spec.task} run"
        )
    classes = list(loaded.spec.class_names)
    name = target or next(iter(default_urgent(classes)))
    if name not in classes:
        raise MedlensError(f"--target {name!r} is not a class of this model; classes: {', '.join(classes)}")
    t = classes.index(name)
    seg = get_task("segmentation").resolve(seg_source)
    if "mask" not in seg.df.columns:
        raise MedlensError(
            f"--localisation {seg_source} has no lesion masks to score the maps against; give a segmentation "
            "source (images with their masks, e.g. kaggle_3m, or a manifest with a mask column)"
        )
    run_manifest = Manifest.load(run_dir / "manifest.csv")
    patients = set(run_manifest.df.loc[run_manifest.df["split"] == split, "patient_id"].astype(str))
    if not patients:
        raise MedlensError(f"{run_dir}/manifest.csv has no {split!r} split to take the patients from")
    sub = seg.with_df(seg.df[seg.df["patient_id"].astype(str).isin(patients)])
    if len(sub) == 0:
        raise MedlensError(
            f"none of the {len(patients)} {split} patients of {run_dir} is in {seg_source}; give the "
            "segmentation source the classifier's labels were made from"
        )
    cached = cache_pairs(sub, loaded.spec.image_size, loaded.spec.channels, progress=progress)
    keep = cached.masks.reshape(len(cached.masks), -1).max(axis=1) > 0
    if not keep.any():
        raise MedlensError(f"no slice of the {split} patients in {seg_source} has a lesion to point at")
    images, masks = cached.images[keep], cached.masks[keep] > 0
    pids = sub.df["patient_id"].astype(str).to_numpy()[cached.kept][keep]
    x = channels_last(normalize(torch.from_numpy(np.ascontiguousarray(images)), loaded.spec))
    foreground = np.stack([foreground_mask(img) for img in images])
    temperature = loaded.temperature or 1.0

    @torch.no_grad()
    def predict(batch: np.ndarray) -> np.ndarray:
        z = loaded.model.eval()(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).float()
        return torch.softmax(z / temperature, dim=1)[:, t].numpy()

    blocks = {}
    for method in methods:
        layer = None if method == "occlusion" else cam_layer(loaded.name, loaded.model)
        heat = np.concatenate(
            [
                attribution_maps(loaded.model, x[s : s + BATCH], layer=layer, method=method, target=t)
                for s in range(0, len(x), BATCH)
            ]
        )
        report = localisation_report(
            heat, masks, foreground, pids, images=x.numpy(), predict=predict, n_bootstrap=n_bootstrap
        )
        report.pop("per_slice", None)
        blocks[method] = {"method": method, "layer": layer or "input (occlusion)", "target": name, **report}
    first = blocks[methods[0]]
    return {
        **first,
        "source": str(seg_source),
        "split": split,
        "by_method": blocks if len(blocks) > 1 else None,
    }
