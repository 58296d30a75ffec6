"""Which known cases an image resembles, and whether it is like the training data at all.

Every image is embedded by the network itself: a classifier's penultimate features (``forward_features``),
or, for segmentation and detection networks, the deepest feature map (the activation with the smallest
spatial size, global-average-pooled). Embeddings are L2-normalised, so the dot product is the cosine
similarity.

The index is built once per run (``RUN/explain_index.npz`` + ``explain_index.json``, no pickle) from the
training split; the validation split calibrates the out-of-distribution score: the mean cosine distance to
the k nearest training cases. An input is flagged when its score exceeds the 99th percentile of the
validation cases' scores (those are in-distribution by construction), so about 1 % of typical images are
flagged by chance.

The index files are a cache: when they are damaged (not a zip archive, pickled arrays, wrong keys, shapes or
embedding width, NaN) they are rebuilt, and explain.json's ``index_note`` says so.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medlens.data.cache import cache_images
from medlens.data.run_data import load_run_manifest
from medlens.errors import MedlensError
from medlens.io.archives import check_zip_inflation
from medlens.io.guard import first_line
from medlens.tasks.base import channels_last, normalize
from medlens.utils.files import atomic_write_bytes, write_json

INDEX_FILE = "explain_index.npz"
INDEX_META = "explain_index.json"
K = 5
OOD_QUANTILE = 99.0
INDEX_VERSION = 1
#: The most the index's arrays may declare once inflated (a million training cases of 1 024 float16 values
#: take 2 GiB); a larger one is treated as damaged and rebuilt.
INDEX_MAX_MB = 4096.0


@dataclass
class EmbeddingIndex:
    """Training embeddings with their cases, and the validation-calibrated out-of-distribution threshold."""

    embeddings: np.ndarray  # (N, D) float32, L2-normalised
    labels: list[str]
    paths: list[str]
    case_ids: list[str]
    threshold: float  # OOD score above this is flagged
    val_scores: np.ndarray  # validation cases' OOD scores (for the percentile of a new score)
    k: int = K
    note: str | None = None  # set when a damaged cache was rebuilt

    @classmethod
    def calibrated(
        cls,
        embeddings: np.ndarray,
        *,
        labels: list[str],
        paths: list[str],
        case_ids: list[str],
        val: np.ndarray,
        k: int = K,
    ) -> EmbeddingIndex:
        """An index of ``embeddings`` whose OOD threshold is the 99th percentile of the ``val`` embeddings'
        scores."""
        index = cls(embeddings, labels, paths, case_ids, threshold=0.0, val_scores=np.zeros(0), k=k)
        val_scores = index.ood_scores(val)
        index.val_scores = np.sort(val_scores).astype(np.float32)
        index.threshold = float(np.percentile(val_scores, OOD_QUANTILE))
        return index

    def neighbours(self, emb: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, indices) of the k nearest training cases of each row of ``emb``, best first."""
        k = min(k or self.k, len(self.embeddings))
        sims = emb @ self.embeddings.T
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, idx, axis=1), idx

    def ood_scores(self, emb: np.ndarray) -> np.ndarray:
        """Mean cosine distance to the k nearest training cases (0 = identical, up to 2)."""
        sims, _ = self.neighbours(emb)
        return (1.0 - sims).mean(axis=1)

    def ood(self, emb: np.ndarray) -> list[dict[str, Any]]:
        """``{"score", "flag", "percentile", "threshold", "reason"}`` per row of ``emb``."""
        scores = self.ood_scores(emb)
        out = []
        for s in scores:
            pct = float((self.val_scores < s).mean() * 100)
            flag = bool(s > self.threshold)
            reason = (
                f"unlike the training data: distance to the {self.k} nearest training images {s:.3f} is "
                f"above the {OOD_QUANTILE:g}th percentile of validation images ({self.threshold:.3f})"
                if flag
                else f"typical of the training data (distance {s:.3f}, {ordinal(pct)} percentile of "
                "validation)"
            )
            out.append(
                {
                    "score": round(float(s), 6),
                    "flag": flag,
                    "percentile": round(pct, 1),
                    "threshold": round(self.threshold, 6),
                    "reason": reason,
                }
            )
        return out

    def similar(self, emb: np.ndarray, k: int = K) -> list[list[dict[str, Any]]]:
        """The k most similar training cases of each row: path, label, case id, cosine similarity."""
        sims, idx = self.neighbours(emb, k)
        return [
            [
                {
                    "case_id": self.case_ids[j],
                    "label": self.labels[j],
                    "path": self.paths[j],
                    "similarity": round(float(s), 4),
                }
                for s, j in zip(srow, irow)
            ]
            for srow, irow in zip(sims, idx)
        ]


def ordinal(value: float) -> str:
    """ "1st", "62nd", "75th", "13th" for a rounded number."""
    n = round(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@torch.no_grad()
def embed(loaded, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """L2-normalised embeddings (N, D) of uint8 images (N, C, S, S) preprocessed like training."""
    model = loaded.model.eval()
    if not images.flags.writeable:
        images = images.copy()
    out = []
    for start in range(0, len(images), batch_size):
        x = channels_last(normalize(torch.from_numpy(images[start : start + batch_size]), loaded.spec))
        feats = (
            model.forward_features(x) if hasattr(model, "forward_features") else deepest_features(model, x)
        )
        out.append(feats.float().reshape(len(x), -1).numpy())
    if not out:
        return np.zeros((0, 1), dtype=np.float32)
    emb = np.concatenate(out).astype(np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def deepest_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Global-average-pooled activation of the module whose output has the smallest spatial size (the
    bottleneck of a U-Net, the last stage of a detector's backbone); the last such module on ties."""
    found: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == x.dim() and output.shape[0] == x.shape[0]:
            found.append(output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if m is not model]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise MedlensError("cannot embed with this network: no layer gives a spatial feature map")
    sizes = [int(np.prod(t.shape[2:])) for t in found]
    smallest = min(sizes)
    deepest = [t for t, s in zip(found, sizes) if s == smallest][-1]
    return deepest.mean(dim=tuple(range(2, deepest.dim())))


_LOADED: dict[str, tuple[tuple, EmbeddingIndex]] = {}  # run folder -> (file stamps, index): a server's cache


def load_or_build_index(run_dir: str | Path, loaded, *, progress: bool = True) -> EmbeddingIndex:
    """The run's index (built from its training split and calibrated on validation the first time); kept in
    memory while its files do not change, so a server explaining one study at a time reads it once."""
    run_dir = Path(run_dir)
    npz, meta = run_dir / INDEX_FILE, run_dir / INDEX_META
    stamp = _stamp(npz, meta, run_dir / "model.pt")
    cached = _LOADED.get(str(run_dir.resolve()))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    index = _load_or_build(run_dir, loaded, progress=progress)
    if len(_LOADED) >= 8:
        _LOADED.pop(next(iter(_LOADED)))
    kept = replace(index, note=None)  # the note concerns this call's rebuild only
    _LOADED[str(run_dir.resolve())] = (_stamp(npz, meta, run_dir / "model.pt"), kept)
    return index


def _stamp(*paths: Path) -> tuple:
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) if p.is_file() else None for p in paths)


def _load_or_build(run_dir: Path, loaded, *, progress: bool) -> EmbeddingIndex:
    npz, meta = run_dir / INDEX_FILE, run_dir / INDEX_META
    if not (npz.is_file() and meta.is_file()):
        return build_index(run_dir, loaded, progress=progress)
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        if not isinstance(info, dict):
            raise ValueError(f"{meta.name} is not a JSON object")
    except (OSError, ValueError) as err:
        return _rebuilt(run_dir, loaded, progress, f"{meta.name} was unreadable ({first_line(err)})")
    if info.get("version") != INDEX_VERSION or info.get("model_mtime") != _model_mtime(run_dir):
        return build_index(run_dir, loaded, progress=progress)  # stale: the model changed since
    try:
        return _read_index(npz, info, loaded)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, MedlensError) as err:
        reason = first_line(err)
        if "pickled" in reason:  # numpy's word for "not an npz archive" with allow_pickle=False
            reason = "not an npz archive of arrays"
        return _rebuilt(run_dir, loaded, progress, f"{npz.name} was damaged ({reason})")


def _rebuilt(run_dir: Path, loaded, progress: bool, why: str) -> EmbeddingIndex:
    """The index built again because its cache files were damaged, with a note saying so."""
    index = build_index(run_dir, loaded, progress=progress)
    index.note = f"{why}; it is a cache, so it was rebuilt from the run's training data"
    return index


def _read_index(npz: Path, info: dict[str, Any], loaded) -> EmbeddingIndex:
    """The cached index, every part checked: keys, shapes, finite values, the model's embedding width.

    Raises:
        ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile, MedlensError: the cache is damaged.
    """
    check_zip_inflation(npz, "embedding index", limit_mb=INDEX_MAX_MB, max_ratio=None)
    with np.load(npz, allow_pickle=False) as arrays:  # pickled (object) arrays raise ValueError
        train, val_scores = arrays["train"], arrays["val_scores"]
    labels, paths, case_ids = info["labels"], info["paths"], info["case_ids"]
    threshold, k = float(info["threshold"]), int(info["k"])
    if train.ndim != 2 or not np.issubdtype(train.dtype, np.floating) or len(train) == 0:
        raise ValueError(f"train embeddings of shape {train.shape} and type {train.dtype}")
    if val_scores.ndim != 1 or not np.issubdtype(val_scores.dtype, np.floating) or len(val_scores) == 0:
        raise ValueError(f"validation scores of shape {val_scores.shape} and type {val_scores.dtype}")
    if not all(isinstance(x, list) and len(x) == len(train) for x in (labels, paths, case_ids)):
        raise ValueError(f"the case lists do not match the {len(train)} embeddings")
    if not (np.isfinite(train).all() and np.isfinite(val_scores).all() and np.isfinite(threshold)):
        raise ValueError("it holds NaN/inf values")
    if k < 1:
        raise ValueError(f"k = {k}")
    width = embed(loaded, _blank(loaded.spec)).shape[1]
    if train.shape[1] != width:
        raise ValueError(f"embeddings of width {train.shape[1]}, the model's are {width}")
    return EmbeddingIndex(
        embeddings=train.astype(np.float32),
        labels=[str(x) for x in labels],
        paths=[str(x) for x in paths],
        case_ids=[str(x) for x in case_ids],
        threshold=threshold,
        val_scores=val_scores.astype(np.float32),
        k=k,
    )


def _blank(spec) -> np.ndarray:
    """One black image of the model's input shape (N, C, S, S), to measure its embedding width."""
    return np.zeros((1, spec.channels, spec.image_size, spec.image_size), dtype=np.uint8)


def build_index(run_dir: str | Path, loaded, *, progress: bool = True) -> EmbeddingIndex:
    """Embed the run's training and validation images and write the index into the run (atomically)."""
    run_dir = Path(run_dir)
    path = run_dir / "manifest.csv"
    if not path.is_file():
        raise MedlensError(
            f"{run_dir} has no manifest.csv; similar cases and OOD need the run's training data"
        )
    manifest = load_run_manifest(run_dir).manifest  # a copied run finds its images where it was trained
    if loaded.spec.spatial_dims != 2:
        raise MedlensError("the similar-case index covers 2D runs; 3D runs get no index")
    size, channels = loaded.spec.image_size, loaded.spec.channels
    parts = {}
    for split in ("train", "val"):
        if split not in manifest.splits:
            raise MedlensError(f"{path} has no {split} split; the index needs both train and val cases")
        sub = manifest.subset(split)
        cached = cache_images(sub, size, channels, progress=progress, description=f"Indexing {split} images")
        if len(cached.kept) == 0:
            raise MedlensError(
                f"none of the run's {len(sub)} {split} images can be read (first: {sub.paths()[0]}); similar "
                "cases and the OOD score need the training data where the run's manifest.csv points"
            )
        kept = sub.with_df(sub.df.iloc[cached.kept])
        parts[split] = (kept, embed(loaded, cached.images))
    train, train_emb = parts["train"]
    labels = train.df["label"].astype(str).tolist() if "label" in train.df.columns else [""] * len(train_emb)
    if "mask" in train.df.columns and "label" not in train.df.columns:
        labels = ["(segmentation case)"] * len(train_emb)
    index = EmbeddingIndex.calibrated(
        train_emb,
        labels=labels,
        paths=[str(p) for p in train.paths()],
        case_ids=train.df["case_id"].astype(str).tolist(),
        val=parts["val"][1],
    )
    buf = _npz_bytes(train=train_emb.astype(np.float16), val_scores=index.val_scores)
    atomic_write_bytes(run_dir / INDEX_FILE, buf)
    write_json(
        run_dir / INDEX_META,
        {
            "version": INDEX_VERSION,
            "model_mtime": _model_mtime(run_dir),
            "k": index.k,
            "threshold": index.threshold,
            "ood_rule": f"mean cosine distance to the {index.k} nearest training images > the "
            f"{OOD_QUANTILE:g}th percentile of the validation images' ({len(index.val_scores)})",
            "labels": index.labels,
            "paths": index.paths,
            "case_ids": index.case_ids,
        },
    )
    return index


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _model_mtime(run_dir: Path) -> float:
    model = run_dir / "model.pt"
    return round(model.stat().st_mtime, 3) if model.is_file() else 0.0
