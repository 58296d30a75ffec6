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

import warnings
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from medlens.errors import MedlensError, did_you_mean
from medlens.evaluation.metrics import _check_inputs
from medlens.evaluation.operating_points import wilson
from medlens.io.guard import read_table

_COLUMNS = ["case_id", "reader", "label_index", "probability"]


def load_readers(path: str | Path, class_names: Sequence[str]) -> pd.DataFrame:
    """Read a reader-study CSV: one row per (case_id, reader) with a ``label`` or a ``probability``.

    Args:
        path: CSV with columns ``case_id``, ``reader`` and ``label`` (a class name) and/or ``probability``
            (the reader's probability of the positive class, i.e. the second class; binary tasks only). A
            probability becomes a label at 0.5 (>= 0.5 is positive) and is kept; where both columns exist, a
            row's label wins and a blank label falls back to its probability. Case ids are read as strings
            ("007" stays "007"). Identical repeated rows are kept once.
        class_names: the model's classes in column order.

    Returns:
        DataFrame with columns ``case_id`` (str), ``reader`` (str), ``label_index`` (int) and
        ``probability`` (float, NaN where the reader gave a label).

    Raises:
        MedlensError: a missing or unreadable file, missing columns, an unknown label, a probability that is
            not a number in [0, 1] (or given for a task that is not binary), a blank case id or reader, or
            two rows for the same case and reader with different answers; each names the file.
    """
    path = Path(path)
    names = _class_names(class_names)
    df = read_table(path, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("case_id", "reader") if c not in df.columns]
    if missing or not {"label", "probability"} & set(df.columns):
        need = missing + ([] if {"label", "probability"} & set(df.columns) else ["label or probability"])
        raise MedlensError(
            f"reader table {path} lacks column(s) {need}; it has {list(df.columns)}. Give one row per "
            "(case_id, reader) with a label (a class name) or a probability of the positive class"
        )
    case_id = df["case_id"].astype(str).str.strip().to_numpy(dtype=object)
    reader = df["reader"].astype(str).str.strip().to_numpy(dtype=object)
    blank = np.flatnonzero((case_id == "") | (reader == ""))
    if blank.size:
        raise MedlensError(
            f"reader table {path} has {blank.size} row(s) with a blank case_id or reader (first on line "
            f"{blank[0] + 2}); fill them in or delete those rows"
        )
    n = len(df)
    label_text = (
        df["label"].astype(str).str.strip().to_numpy(dtype=object)
        if "label" in df.columns
        else np.full(n, "", dtype=object)
    )
    label_index = np.full(n, -1, dtype=np.int64)
    index = {cls: i for i, cls in enumerate(names)}
    has_label = label_text != ""
    mapped = np.array([index.get(t, -1) for t in label_text[has_label]], dtype=np.int64)
    bad = np.flatnonzero(mapped < 0)
    if bad.size:
        row = int(np.flatnonzero(has_label)[bad[0]])
        label = str(label_text[row])
        raise MedlensError(
            f"reader table {path} line {row + 2} has label {label!r}, which is not a class of the model "
            f"{names}.{did_you_mean(label, names)} Use the class names exactly ({bad.size} bad row(s) in all)"
        )
    label_index[has_label] = mapped
    probability = np.full(n, np.nan)
    if "probability" in df.columns:
        probability = _probabilities(df["probability"], path, names)
        from_prob = ~has_label & ~np.isnan(probability)
        label_index[from_prob] = (probability[from_prob] >= 0.5).astype(np.int64)
    empty = np.flatnonzero(label_index < 0)
    if empty.size:
        raise MedlensError(
            f"reader table {path} line {empty[0] + 2} (case {case_id[empty[0]]!r}, reader "
            f"{reader[empty[0]]!r}) gives neither a label nor a probability ({empty.size} such row(s)); "
            "fill them in or delete those rows"
        )
    out = pd.DataFrame(
        {
            "case_id": pd.Series(case_id, dtype=object),
            "reader": pd.Series(reader, dtype=object),
            "label_index": label_index,
            "probability": probability,
        }
    )
    return _dedupe(out, f"reader table {path}", "lines", offset=2)


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


def model_agreement(reads: Sequence[tuple[str, str, str]], class_names: Sequence[str]) -> dict[str, Any]:
    """Agreement of readers with the model on cases without ground truth (a live worklist): the share of
    reads that match the model's call and Cohen's kappa, over all reads and per reader.

    Args:
        reads: ``(reader, model_label, reader_label)`` per read.
        class_names: the model's classes (kappa is over all of them).

    Returns:
        ``{"n", "agreement", "kappa", "by_reader": {reader: {"n", "agreement", "kappa"}}}``; kappa is None
        where undefined (fewer than 2 reads, or chance agreement 1).
    """
    names = [str(c) for c in class_names]
    index = {c: i for i, c in enumerate(names)}
    rows = [(r, index[m], index[x]) for r, m, x in reads if m in index and x in index]

    def block(items: list[tuple[str, int, int]]) -> dict[str, Any]:
        a = np.array([m for _, m, _ in items], dtype=int)
        b = np.array([x for _, _, x in items], dtype=int)
        return {
            "n": len(items),
            "agreement": round(float((a == b).mean()), 4) if len(items) else None,
            "kappa": None if not names else _kappa(a, b, len(names)),
        }

    readers = sorted({r for r, _, _ in rows})
    return {**block(rows), "by_reader": {r: block([x for x in rows if x[0] == r]) for r in readers}}


def simulate_readers(
    y_true: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    skills: dict[str, float],
    seed: int = 0,
    case_ids: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Simulated readers, for tests and demos only: not a model of how radiologists err.

    Each reader independently gives the true label with probability ``skill`` and otherwise a class drawn
    uniformly from the other classes.

    Args:
        y_true: true class index per case, shape (N,).
        class_names: the class names in index order.
        skills: reader name -> probability in [0, 1] of reading a case correctly.
        seed: seed of the draws; the same seed gives the same reads.
        case_ids: id per case (default ``"0"``, ``"1"``, ...), stored as strings.

    Returns:
        DataFrame with columns ``case_id``, ``reader`` and ``label`` (class names), one row per case and
        reader, readers in the order of ``skills``.
    """
    names = _class_names(class_names)
    y = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= len(names)):
        raise MedlensError(f"y_true holds class indices outside 0..{len(names) - 1} for classes {names}")
    ids = [str(i) for i in (range(len(y)) if case_ids is None else case_ids)]
    if len(ids) != len(y):
        raise MedlensError(f"case_ids has {len(ids)} entries for {len(y)} cases; give one id per case")
    rng = np.random.default_rng(seed)
    parts = []
    for reader, skill in skills.items():
        if not 0.0 <= float(skill) <= 1.0:
            raise MedlensError(f"skill of reader {reader!r} is {skill}; give a probability between 0 and 1")
        correct = rng.random(len(y)) < float(skill)
        other = (y + rng.integers(1, len(names), size=len(y))) % len(names)
        label = np.where(correct, y, other)
        parts.append(
            pd.DataFrame(
                {
                    "case_id": pd.Series(ids, dtype=object),
                    "reader": str(reader),
                    "label": pd.Series(np.asarray(names, dtype=object)[label], dtype=object),
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ("case_id", "reader", "label")})
    return pd.concat(parts, ignore_index=True)


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


def _kappa(a: np.ndarray, b: np.ndarray, n_classes: int) -> float | None:
    """Cohen's kappa over all classes; None where undefined (fewer than 2 cases, or chance agreement 1)."""
    if len(a) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns before returning NaN for an undefined kappa
        value = float(cohen_kappa_score(a, b, labels=np.arange(n_classes)))
    return value if np.isfinite(value) else None


def _category_counts(reads: np.ndarray, n_classes: int) -> np.ndarray:
    """(raters, cases) labels -> (cases, categories) table of how many raters chose each category."""
    n_cases = reads.shape[1]
    keys = np.arange(n_cases)[None, :] * n_classes + reads
    return np.bincount(keys.ravel(), minlength=n_cases * n_classes).reshape(n_cases, n_classes)


def _fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa from a (cases, categories) count table with the same number of raters per case.

    None where undefined: no cases, fewer than 2 raters, or every rating in one category.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]):
        raise MedlensError("Fleiss' kappa needs the same number of raters for every case")
    m = raters[0]
    if m < 2:
        return None
    agreement = ((counts * (counts - 1)).sum(axis=1) / (m * (m - 1))).mean()  # mean P_i
    p_j = counts.sum(axis=0) / counts.sum()
    chance = float((p_j**2).sum())
    if chance >= 1.0 - 1e-12:
        return None
    return float((agreement - chance) / (1.0 - chance))


def _majority(reads: np.ndarray, n_classes: int) -> tuple[np.ndarray, int]:
    """Most voted class per case (column) among the readers who read it (-1 = no read); ties go to the
    lowest class index. Returns the votes and the number of tied cases."""
    n_cases = reads.shape[1]
    ok = reads >= 0
    keys = (np.arange(n_cases)[None, :] * n_classes + reads)[ok]
    counts = np.bincount(keys, minlength=n_cases * n_classes).reshape(n_cases, n_classes)
    top = counts.max(axis=1, keepdims=True)
    ties = int(((counts == top).sum(axis=1) > 1).sum())
    return counts.argmax(axis=1), ties


def _class_names(class_names: Sequence[str]) -> list[str]:
    names = [str(c) for c in class_names]
    if len(names) < 2 or len(set(names)) != len(names):
        raise MedlensError(f"class_names must hold at least 2 unique names, got {names}")
    return names


def _class_index(c: Any, n_classes: int, names: list[str], what: str) -> int:
    try:
        index = int(c)
    except (TypeError, ValueError):
        index = -1
    if index != c or not 0 <= index < n_classes:
        raise MedlensError(f"{what} class {c!r} is not a class index 0..{n_classes - 1} of {names}")
    return index


def _probabilities(column: pd.Series, path: Path, names: list[str]) -> np.ndarray:
    text = column.astype(str).str.strip()
    given = (text != "").to_numpy()
    values = pd.to_numeric(text.where(text != ""), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(given & ~((values >= 0) & (values <= 1)))
    if bad.size:
        raise MedlensError(
            f"reader table {path} line {bad[0] + 2} has probability {text.iloc[bad[0]]!r}, not a number in "
            f"[0, 1] ({bad.size} bad row(s)); give the reader's probability of {names[-1]!r}"
        )
    if given.any() and len(names) != 2:
        raise MedlensError(
            f"reader table {path} gives probabilities, but the task has {len(names)} classes; a probability "
            "is only meaningful for a binary task: give a label column with class names instead"
        )
    return values


def _dedupe(table: pd.DataFrame, source: str, unit: str, offset: int) -> pd.DataFrame:
    """Drop identical repeats of (case_id, reader); refuse repeats with different answers."""
    answers = table[["case_id", "reader", "label_index", "probability"]]
    distinct = answers.drop_duplicates()
    clash = distinct.duplicated(["case_id", "reader"], keep=False)
    if clash.any():
        first = distinct[clash].iloc[0]
        lines = table.index[(table["case_id"] == first["case_id"]) & (table["reader"] == first["reader"])]
        raise MedlensError(
            f"{source} has different answers for case {first['case_id']!r} by reader {first['reader']!r} "
            f"({unit} {', '.join(str(i + offset) for i in lines)}); keep one row per case and reader"
        )
    return table.loc[distinct.index].reset_index(drop=True)


def _reader_table(readers: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Normalise a reader DataFrame to ``case_id``, ``reader``, ``label_index``, ``probability``."""
    if not isinstance(readers, pd.DataFrame):
        raise MedlensError("readers must be a pandas DataFrame, e.g. what load_readers returned")
    has = set(readers.columns)
    if not {"case_id", "reader"} <= has or not has & {"label_index", "label"}:
        raise MedlensError(
            f"reader table lacks columns: needs case_id, reader and label_index (or label); has "
            f"{list(readers.columns)}. Load it with medlens.evaluation.readers.load_readers"
        )
    if readers.empty:
        raise MedlensError("reader table has no rows; give one row per (case_id, reader)")
    table = pd.DataFrame(
        {
            "case_id": readers["case_id"].astype(str).to_numpy(dtype=object),
            "reader": readers["reader"].astype(str).to_numpy(dtype=object),
        }
    )
    if "label_index" in has:
        label = pd.to_numeric(readers["label_index"], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(label) | (label % 1 != 0) | (label < 0) | (label >= len(names))
        if bad.any():
            value = readers["label_index"].iloc[int(np.flatnonzero(bad)[0])]
            raise MedlensError(
                f"reader table has label_index {value!r}, not a class index 0..{len(names) - 1} of {names}"
            )
        table["label_index"] = label.astype(np.int64)
    else:
        index = {cls: i for i, cls in enumerate(names)}
        text = readers["label"].astype(str).to_numpy(dtype=object)
        label = np.array([index.get(t, -1) for t in text], dtype=np.int64)
        if (label < 0).any():
            value = str(text[int(np.flatnonzero(label < 0)[0])])
            hint = did_you_mean(value, names)
            raise MedlensError(f"reader table has label {value!r}, not a class of the model {names}.{hint}")
        table["label_index"] = label
    prob = readers["probability"] if "probability" in has else pd.Series(np.nan, index=readers.index)
    table["probability"] = pd.to_numeric(prob, errors="coerce").to_numpy(dtype=np.float64)
    return _dedupe(table, "reader table", "rows", offset=0)
