"""Explaining a classifier's answer: where the evidence is (Grad-CAM, Grad-CAM++ or occlusion), how sure the
model is (calibrated), the alternatives, the most similar training cases, and whether the image is like the
training data at all; assembled into a rationale made only of those facts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medlens.data.cache import load_image
from medlens.errors import MedlensError
from medlens.explaining.cam import attribution_maps, cam_layer, peak
from medlens.explaining.embedding import embed
from medlens.explaining.explainers import ExplainContext, register_explainer, study_error
from medlens.explaining.foreground import foreground_mask, heat_inside
from medlens.explaining.render import blend, compose
from medlens.io.failures import read_guarded
from medlens.tasks.base import channels_last, normalize
from medlens.tasks.classification import decide, predict_probs

BATCH = 32


@register_explainer("classification")
def explain_classification(loaded, studies: list, ctx: ExplainContext) -> list[dict[str, Any]]:
    """One record per study (``{"input", "error"}`` for an unreadable one), PNGs under ``ctx.out``."""
    classes = list(loaded.spec.class_names)
    target = None
    if ctx.target is not None:
        if ctx.target not in classes:
            raise MedlensError(
                f"--target {ctx.target!r} is not a class of this model; classes: {', '.join(classes)}"
            )
        target = classes.index(ctx.target)
    layer = cam_layer(loaded.name, loaded.model) if ctx.method != "occlusion" else "input (occlusion)"
    records: list[dict[str, Any] | None] = [None] * len(studies)
    readable: list[tuple[int, np.ndarray]] = []
    for i, study in enumerate(studies):
        try:
            size, channels = loaded.spec.image_size, loaded.spec.channels
            readable.append((i, read_guarded(study.path, load_image, study.path, size, channels)))
        except MedlensError as err:
            records[i] = {"input": study.input, "error": study_error(err)}
    for start in range(0, len(readable), BATCH):
        chunk = readable[start : start + BATCH]
        images = np.stack([img for _, img in chunk])
        for (i, image), record in zip(chunk, _explain_batch(loaded, images, classes, target, layer, ctx)):
            records[i] = {"input": studies[i].input, **record}
            if ctx.write_png:
                records[i]["png"] = _png(image, record, studies[i], ctx)
    return [r for r in records if r is not None]


def _explain_batch(loaded, images, classes, target, layer, ctx) -> list[dict[str, Any]]:
    probs = predict_probs(loaded, images)
    decided = decide(probs, classes, loaded.operating_point)
    targets = [target if target is not None else int(d) for d in decided]
    x = channels_last(normalize(torch.from_numpy(np.ascontiguousarray(images)), loaded.spec))
    heat = attribution_maps(
        loaded.model, x, layer=None if ctx.method == "occlusion" else layer, method=ctx.method, target=targets
    )
    emb = embed(loaded, images) if ctx.index is not None else None
    similar = ctx.index.similar(emb, ctx.k) if emb is not None else [None] * len(images)
    ood = ctx.index.ood(emb) if emb is not None else [None] * len(images)
    out = []
    for b in range(len(images)):
        order = np.argsort(-probs[b], kind="stable")
        fg = foreground_mask(images[b])
        px, py = peak(heat[b])
        record = {
            "prediction": classes[int(decided[b])],
            "probabilities": {c: round(float(p), 6) for c, p in zip(classes, probs[b])},
            "calibrated": loaded.calibration is not None,
            "method": ctx.method,
            "layer": layer,
            "target": classes[targets[b]],
            "peak": [int(px), int(py)],
            "peak_region": region(px, py, heat[b].shape),
            "heat_in_foreground": _round(heat_inside(heat[b], fg)),
            "alternatives": [
                {"class": classes[j], "probability": round(float(probs[b, j]), 6)} for j in order[1:3]
            ],
            "similar": similar[b],
            "ood": ood[b],
        }
        record["rationale"] = rationale(record)
        record["_heat"] = heat[b]
        out.append(record)
    return out


def rationale(r: dict[str, Any]) -> str:
    """One line made only of the record's facts, e.g. "glioma, 0.93 (calibrated); next meningioma 0.05;
    evidence concentrated in the image's upper right (peak at x 80, y 41), 97 % of it on the body; 4 of 5
    most similar training cases are glioma; image typical of training data"."""
    p = r["probabilities"][r["prediction"]]
    parts = [f"{r['prediction']}, {p:.2f} ({'calibrated' if r.get('calibrated') else 'uncalibrated'})"]
    if r.get("alternatives"):
        alt = r["alternatives"][0]
        parts.append(f"next {alt['class']} {alt['probability']:.2f}")
    x, y = r["peak"]
    where = (
        f"evidence for {r['target']} concentrated in the image's {r['peak_region']} (peak at x {x}, y {y})"
    )
    if r.get("heat_in_foreground") is not None:
        where += f", {100 * r['heat_in_foreground']:.0f} % of it on the body"
    parts.append(where)
    if r.get("similar"):
        labels = [s["label"] for s in r["similar"]]
        same = sum(lab == r["prediction"] for lab in labels)
        parts.append(f"{same} of {len(labels)} most similar training cases are {r['prediction']}")
    if r.get("ood"):
        parts.append(
            "image unlike the training data: review" if r["ood"]["flag"] else "image typical of training data"
        )
    return "; ".join(parts)


def region(x: int, y: int, shape: tuple[int, int]) -> str:
    """Where a point lies in the image, in thirds: "upper left", "centre", "lower middle", ..."""
    h, w = shape
    row = ("upper", "middle", "lower")[min(2, int(3 * y / max(h, 1)))]
    col = ("left", "middle", "right")[min(2, int(3 * x / max(w, 1)))]
    if row == col == "middle":
        return "centre"
    return f"{row} {col}" if row != "middle" else f"middle {col}"


def _png(image: np.ndarray, record: dict[str, Any], study, ctx: ExplainContext) -> str:
    heat = record.pop("_heat")
    display = np.moveaxis(image, 0, -1)
    p = record["probabilities"][record["prediction"]]
    lines = [
        f"{record['prediction']} {p:.3f} ({'calibrated' if record['calibrated'] else 'uncalibrated'})"
        + "".join(f"   {a['class']} {a['probability']:.3f}" for a in record["alternatives"]),
        f"{record['method']} for {record['target']} at {record['layer']}; "
        f"peak x {record['peak'][0]}, y {record['peak'][1]}",
    ]
    if record.get("ood"):
        lines.append(record["ood"]["reason"])
    path = ctx.out / ctx.png_name(study.input)
    compose(
        [("image", display), (f"{record['method']}: {record['target']}", blend(display, heat))], lines, path
    )
    return path.name


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


def drop_private(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without the in-memory arrays (``_``-prefixed keys) for JSON."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]
