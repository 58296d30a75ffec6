"""Class balance per split: counts, imbalance ratio and the class weights ``train`` would use."""

from __future__ import annotations

from typing import Any

import pandas as pd

from medlens.data.balance import class_weights
from medlens.data.manifest import natural_key


def class_balance(table: pd.DataFrame) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """Counts per class per split (``classes`` in audit.json) and the balance summary.

    Unreadable images are counted too: they are still cases of the manifest. Rows without a split are
    under ``"unsplit"``; ``"all"`` sums every split.
    """
    if "label" not in table.columns:
        return {}, {}
    names = sorted(table["label"].astype(str).unique(), key=natural_key)
    counts: dict[str, dict[str, int]] = {}
    splits = [s for s in ("train", "val", "test", "") if (table["split"] == s).any()]
    for split in splits:
        labels = table.loc[table["split"] == split, "label"].astype(str)
        counts[split or "unsplit"] = {c: int((labels == c).sum()) for c in names}
    if len(splits) > 1:
        counts["all"] = {c: int((table["label"].astype(str) == c).sum()) for c in names}
    # weights come from the training cases when there is a train split, like `train --class-weights auto`
    basis = table.loc[table["split"] == "train", "label"] if "train" in splits else table["label"]
    basis = basis.astype(str).tolist()
    info = {
        "imbalance_ratio": {k: _ratio(v) for k, v in counts.items()},
        "class_weights": class_weights(basis, names),
        "class_weights_from": "train" if "train" in splits else "all",
    }
    return counts, info


def _ratio(counts: dict[str, int]) -> float | None:
    """Largest over smallest class count; ``None`` when a class is missing from the split entirely."""
    values = list(counts.values())
    return float(max(values) / min(values)) if values and min(values) > 0 else None
