"""Reader study: radiologists' reads of the same cases compared with the model and with each other.

A reader table has one row per (case, reader) with the reader's class label (or, for a binary task, their
probability of the positive class). :func:`reader_study` scores every reader against the truth (accuracy and,
per positive class, sensitivity and specificity with Wilson 95 % intervals), scores the model on the cases
the readers read, and measures agreement: Cohen's kappa of each reader with the model and of each pair of
readers (on the cases both read), Fleiss' kappa of all readers (on the cases every reader read), and the
majority vote. Cases no reader read are reported as n/a, not as errors; reader rows for unknown cases are
counted and ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from medlens.errors import MedlensError
from medlens.evaluation.metrics import _check_inputs
from medlens.evaluation.operating_points import wilson
from medlens.evaluation.reader_agreement import (
    _category_counts,
    _fleiss_kappa,
    _kappa,
    _majority,
    model_agreement,
)
from medlens.evaluation.reader_table import (
    _class_index,
    _reader_table,
    load_readers,
    simulate_readers,
)

__all__ = ["load_readers", "model_agreement", "reader_study", "simulate_readers"]


def reader_study(
    case_ids: Sequence[Any],
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    readers: pd.DataFrame,
    *,
    positive: list[int],
    threshold: dict[int, float] | None = None,
) -> dict[str, Any]:
    """Score each reader, the model and the readers' majority vote against the truth, and their agreement.

    Args:
        case_ids: id of each of the model's cases, shape (N,); compared with the reader table as strings.
        y_true: true class index per case, shape (N,).
        probs: the model's class probabilities, shape (N, C); its prediction is ``argmax(probs)``, which is
            what the kappas compare the readers with.
        class_names: the C class names in column order.
        readers: what :func:`load_readers` returned (``case_id``, ``reader``, ``label_index``), or a table
            with class names in a ``label`` column (as :func:`simulate_readers` gives).
        positive: class indices to report sensitivity and specificity for. A reader calls a case positive
            for class c when their label is c.
        threshold: per positive class, the model's probability threshold: the model calls a case positive for
            c when ``probs[:, c] >= threshold[c]``. Without one, binary tasks use 0.5 and multiclass tasks
            use ``argmax == c``.

    Returns:
        A JSON-ready dict:

        - ``n_readers``, ``n_cases``, ``n_cases_read``; ``cases_without_reader``: cases no reader read
          (n/a, left out of every statistic below).
        - ``per_reader``: ``[{"reader", "n", "accuracy", "per_class": {class: {"sensitivity",
          "specificity"}}, "kappa_vs_model": {"value", "n"}}]`` in order of first appearance.
        - ``model_on_read_cases``: ``{"n", "accuracy", "per_class"}`` on the cases at least one reader read.
        - ``kappa_pairs``: ``[{"a", "b", "value", "n"}]``, Cohen's kappa on the cases both readers read.
        - ``fleiss_kappa``: ``{"value", "n_cases", "n_raters"}`` on the cases every reader read; None with
          fewer than 2 readers.
        - ``majority_vote``: ``{"n", "accuracy", "per_class", "agreement_with_model", "kappa_vs_model",
          "ties"}``, the most voted class among the readers of each read case (ties, counted, go to the
          lowest class index).
        - ``unmatched_rows``: reader rows whose case id is not among ``case_ids`` (ignored).

        Every proportion is ``{"value", "ci95"}`` with a Wilson 95 % interval; both are None where there is
        no case to count. A kappa is None where it is undefined (fewer than 2 cases, or chance agreement 1,
        e.g. both raters constant).

    Raises:
        MedlensError: inputs of mismatched shapes, repeated case ids, a class index out of range, a reader
            table without the needed columns, or no reader row matching any case id.
    """
    y_true, probs, names = _check_inputs(y_true, probs, class_names)
    n_classes = len(names)
    ids = pd.Index([str(c) for c in case_ids])
    if len(ids) != len(y_true):
        raise MedlensError(f"case_ids has {len(ids)} entries for {len(y_true)} cases; give one id per case")
    if ids.has_duplicates:
        dup = ids[ids.duplicated()][0]
        raise MedlensError(f"case_ids repeats {dup!r}; each case needs a unique id to match the reader rows")
    positive = [_class_index(c, n_classes, names, "positive") for c in positive]
    threshold = {
        _class_index(c, n_classes, names, "threshold"): float(t) for c, t in (threshold or {}).items()
    }
    table = _reader_table(readers, names)

    where = ids.get_indexer(table["case_id"].to_numpy(dtype=object))
    matched = where >= 0
    unmatched = int((~matched).sum())
    if not matched.any():
        raise MedlensError(
            f"none of the {len(table)} reader rows has a case id among the model's {len(ids)} cases "
            f"(reader ids look like {table['case_id'].iloc[0]!r}, model ids like {ids[0]!r}); "
            "check that both use the same case ids"
        )
    reader_names = list(pd.unique(table["reader"].to_numpy(dtype=object)[matched]))
    reader_of = pd.Index(reader_names).get_indexer(table["reader"].to_numpy(dtype=object)[matched])
    reads = np.full((len(reader_names), len(ids)), -1, dtype=np.int64)  # -1: this reader did not read it
    reads[reader_of, where[matched]] = table["label_index"].to_numpy(dtype=np.int64)[matched]
    has_read = reads >= 0
    read_any = has_read.any(axis=0)

    y_pred = probs.argmax(axis=1)
    model_pos = _model_positive(probs, y_pred, positive, threshold)
    per_reader = []
    for r, name in enumerate(reader_names):
        m = has_read[r]
        per_reader.append(
            {
                "reader": str(name),
                "n": int(m.sum()),
                "accuracy": _proportion(int((reads[r, m] == y_true[m]).sum()), int(m.sum())),
                "per_class": _per_class(y_true[m], {c: reads[r, m] == c for c in positive}, names),
                "kappa_vs_model": {"value": _kappa(reads[r, m], y_pred[m], n_classes), "n": int(m.sum())},
            }
        )
    kappa_pairs = []
    for a, b in combinations(range(len(reader_names)), 2):
        both = has_read[a] & has_read[b]
        kappa_pairs.append(
            {
                "a": str(reader_names[a]),
                "b": str(reader_names[b]),
                "value": _kappa(reads[a, both], reads[b, both], n_classes),
                "n": int(both.sum()),
            }
        )
    fleiss = None
    if len(reader_names) >= 2:
        every = has_read.all(axis=0)
        fleiss = {
            "value": _fleiss_kappa(_category_counts(reads[:, every], n_classes)),
            "n_cases": int(every.sum()),
            "n_raters": len(reader_names),
        }
    votes, ties = _majority(reads[:, read_any], n_classes)
    truth, model = y_true[read_any], y_pred[read_any]
    n_read = int(read_any.sum())
    return {
        "n_readers": len(reader_names),
        "n_cases": len(ids),
        "n_cases_read": n_read,
        "cases_without_reader": len(ids) - n_read,
        "per_reader": per_reader,
        "model_on_read_cases": {
            "n": n_read,
            "accuracy": _proportion(int((model == truth).sum()), n_read),
            "per_class": _per_class(truth, {c: model_pos[c][read_any] for c in positive}, names),
        },
        "kappa_pairs": kappa_pairs,
        "fleiss_kappa": fleiss,
        "majority_vote": {
            "n": n_read,
            "accuracy": _proportion(int((votes == truth).sum()), n_read),
            "per_class": _per_class(truth, {c: votes == c for c in positive}, names),
            "agreement_with_model": float((votes == model).mean()),
            "kappa_vs_model": _kappa(votes, model, n_classes),
            "ties": ties,
        },
        "unmatched_rows": unmatched,
    }


# -- internals ---------------------------------------------------------------------------------------------
def _proportion(k: int, n: int) -> dict[str, Any]:
    """``{"value", "ci95"}`` of k of n (both None when n is 0)."""
    if n <= 0:
        return {"value": None, "ci95": None}
    lo, hi = wilson(k, n)
    return {"value": k / n, "ci95": [float(lo), float(hi)]}


def _per_class(truth: np.ndarray, calls: dict[int, np.ndarray], names: list[str]) -> dict[str, Any]:
    """Sensitivity and specificity per positive class, from boolean calls (positive for c) per case."""
    out = {}
    for c, said in calls.items():
        is_c = truth == c
        out[names[c]] = {
            "sensitivity": _proportion(int((said & is_c).sum()), int(is_c.sum())),
            "specificity": _proportion(int((~said & ~is_c).sum()), int((~is_c).sum())),
        }
    return out


def _model_positive(
    probs: np.ndarray, y_pred: np.ndarray, positive: list[int], threshold: dict[int, float]
) -> dict[int, np.ndarray]:
    binary = probs.shape[1] == 2
    out = {}
    for c in positive:
        if c in threshold or binary:
            out[c] = probs[:, c] >= threshold.get(c, 0.5)
        else:
            out[c] = y_pred == c
    return out
