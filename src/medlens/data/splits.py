"""Seeded, stratified splits: carve a validation set, or keep a fraction of the training cases.

Both are deterministic for a given seed and manifest order, and keep every class represented. When several
cases share a ``patient_id`` (slices of one scan, several views of one patient), validation is carved by
patient, so no patient ends up on both sides.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from medlens.data.manifest import Manifest, natural_key
from medlens.errors import MedlensError


def carve_validation(manifest: Manifest, fraction: float = 0.2, seed: int = 0) -> Manifest:
    """Move a stratified ``fraction`` of the training cases to a new ``val`` split.

    Rows with an empty split count as training cases and become ``train``; ``test`` rows are untouched. A
    manifest that already has ``val`` rows comes back unchanged (apart from empty splits → ``train``).
    Stratified by label; grouped by ``patient_id`` when patients have several cases (then the fraction is
    approximate: scikit-learn's StratifiedGroupKFold with about ``1 / fraction`` folds, first fold = val).

    Args:
        manifest: the cases.
        fraction: share of the training cases to move, 0 < fraction < 1.
        seed: random seed; the same seed gives the same split.

    Raises:
        MedlensError: ``fraction`` outside (0, 1), fewer than two training cases (or patients), or only one
            case in each class (none could be validated).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise MedlensError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    df = manifest.df.copy()
    df.loc[df["split"] == "", "split"] = "train"
    if (df["split"] == "val").any():
        return manifest.with_df(df)
    pool = np.flatnonzero((df["split"] == "train").to_numpy())
    where = manifest.source or str(manifest.root)
    if len(pool) < 2:
        raise MedlensError(
            f"cannot carve a validation split from {len(pool)} training case(s) in {where}; "
            "add cases, or give validation cases (a val folder or split column)"
        )
    labels = df["label"].to_numpy()[pool] if manifest.has_labels else np.zeros(len(pool), dtype=object)
    groups = df["patient_id"].to_numpy()[pool]
    if pd.Series(groups).duplicated().any():
        val = _grouped_val(labels, groups, fraction, seed, where)
    else:
        val = _per_class(labels, fraction, np.random.default_rng(seed), low=1, keep_one=True)
        if not len(val):  # every class has one case: it stays in training, so no class can be validated
            raise MedlensError(_single_cases(labels, where))
    df.iloc[pool[val], df.columns.get_loc("split")] = "val"
    return manifest.with_df(df)


def _single_cases(labels: np.ndarray, where: str) -> str:
    """Why no validation split could be carved from classes of one case each, and what to do."""
    classes = sorted({str(v) for v in labels.tolist()}, key=natural_key)
    shown = ", ".join(classes[:5]) + (f" and {len(classes) - 5} more" if len(classes) > 5 else "")
    return (
        f"cannot carve a validation split in {where}: each class has a single training image ({shown}); "
        "each class needs at least 2 images, one to train on and one to validate: add images, or give "
        "validation cases yourself (a val folder beside train, or a split column in a CSV)"
    )


def stratified_subset(manifest: Manifest, fraction: float, seed: int = 0, split: str = "train") -> Manifest:
    """Keep a stratified ``fraction`` of one split's cases (at least one per class) and all other rows.

    Args:
        manifest: the cases.
        fraction: share of ``split`` to keep, 0 < fraction <= 1 (1 returns the manifest unchanged).
        seed: random seed; the same seed gives the same subset.
        split: the split to subsample.

    Raises:
        MedlensError: ``fraction`` outside (0, 1], or no rows in ``split``.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise MedlensError(
            f"fraction must be in (0, 1] (the share of {split} cases to keep), got {fraction!r}"
        )
    if fraction == 1:
        return manifest
    df = manifest.df
    rows = np.flatnonzero((df["split"] == split).to_numpy())
    if not len(rows):
        raise MedlensError(
            f"no {split!r} cases to subsample in {manifest.source or manifest.root}; "
            f"it has splits {manifest.splits or ['(none)']}"
        )
    labels = df["label"].to_numpy()[rows] if manifest.has_labels else np.zeros(len(rows), dtype=object)
    keep = _per_class(labels, fraction, np.random.default_rng(seed), low=1, keep_one=False)
    drop = np.setdiff1d(rows, rows[keep])
    return manifest.with_df(df.drop(index=df.index[drop]))


def _per_class(
    labels: np.ndarray, fraction: float, rng: np.random.Generator, *, low: int, keep_one: bool
) -> np.ndarray:
    """Sorted positions of a seeded ``fraction`` of each class (at least ``low`` per class).

    Hand-rolled rather than StratifiedShuffleSplit, which refuses classes of one case and splits smaller
    than the number of classes; here tiny classes simply keep their only case. ``keep_one`` leaves at least
    one case of every class unpicked (a class never moves entirely to validation).
    """
    picked = []
    for cls in sorted(set(labels.tolist()), key=natural_key):
        members = np.flatnonzero(labels == cls)
        top = len(members) - 1 if keep_one else len(members)
        k = min(max(int(np.floor(fraction * len(members) + 0.5)), low), top)
        picked.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=int)


def _grouped_val(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int, where: str
) -> np.ndarray:
    """Positions of the first fold of a StratifiedGroupKFold: every patient entirely on one side."""
    # deferred: scikit-learn is heavy (~1 s); only stratified group splitting needs it
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        raise MedlensError(
            f"cannot carve a validation split in {where}: all training cases belong to one "
            "patient; add patients, or give validation cases (a val folder or split column)"
        )
    n_splits = min(max(2, round(1 / fraction)), n_groups)
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": fine here
        warnings.simplefilter("ignore", UserWarning)
        _, val = next(cv.split(np.zeros(len(labels)), labels.astype(str), groups.astype(str)))
    return np.sort(val)
