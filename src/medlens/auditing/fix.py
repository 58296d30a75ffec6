"""Clean a manifest from its audit: drop broken files and duplicates, close train/test leakage.

Rules, in order, for every duplicate group:
1. a group whose members carry different labels is dropped entirely (which label is right is unknowable);
2. of each set of pixel-identical members one is kept, preferably the one in the ``prefer`` split;
3. if the remaining members still span several splits, all of them move to ``prefer`` (train by default).
The audit reports exact and near groups in two layers, so an exact group can also sit inside a near group
(see :mod:`medlens.auditing.duplicates`). The rules run once per near group (exact copies inside it
deduplicated first by rule 2, the drop credited to their exact group) and once per exact group outside any
near group: no image is handled, or dropped, twice. Unreadable files are dropped. Groups are recomputed after
each pass on the cleaned rows until nothing changes, so re-auditing the cleaned manifest finds no cross-split
group.

When cases are grouped by patient (some patient has several rows: slices, views), the split is a patient-level
split and moves keep it one: a patient whose rows lie in several splits moves wholly to ``prefer`` first, and
rule 3 moves whole patients, never single slices. A near (not pixel-identical) group that links *different*
patients across splits moves them only on patient-level evidence: at least :data:`MIN_SHARED_GROUPS` groups
linking the same two patients. Neighbouring-slice look-alikes (top-of-head slices share an outline) link
patients by one slice pair; a patient re-exported under a second id shares many.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medlens.auditing.duplicates import find_duplicate_groups
from medlens.auditing.report import write_report
from medlens.data.manifest import Manifest, grouped_patients
from medlens.errors import MedlensError

MAX_PASSES = 10
MIN_SHARED_GROUPS = 3


def apply_fix(manifest: Manifest, result, prefer: str = "train") -> tuple[Manifest, list[dict[str, Any]]]:
    """Apply the cleaning rules to ``manifest`` using an :class:`~medlens.auditing.run.AuditResult` of it.

    Returns:
        The cleaned manifest and one change record per affected case: ``{"action": "drop" | "move",
        "path", "reason", "group", "from_split", "to_split", "pass"}`` (``group`` is the audit.json group
        id for the first pass, None for unreadable files).
    """
    if prefer not in ("train", "test"):
        raise MedlensError(f"prefer must be 'train' or 'test', got {prefer!r}")
    table = result.table
    if len(table) != len(manifest) or list(table["path"]) != manifest.paths():
        raise MedlensError(
            f"the audit result does not match manifest {manifest.source or manifest.root} "
            f"({len(table)} vs {len(manifest)} rows); audit this manifest, then fix it"
        )
    threshold = int(result.summary["duplicates"]["threshold"])
    keep = table["readable"].to_numpy().copy()
    split = manifest.df["split"].to_numpy(dtype=object).copy()
    changes = [
        _change("drop", r, f"unreadable: {r.reason}", None, "")
        for r in table[~table["readable"]].itertuples(index=False)
    ]
    patients = grouped_patients(table["patient_id"])
    if patients is not None:
        changes += _unsplit_patients(table, keep, split, patients, prefer)
    for n_pass in range(1, MAX_PASSES + 1):
        current = table[keep].copy()
        current["split"] = split[current["row"].to_numpy()]
        before = len(changes)
        groups = fix_units(find_duplicate_groups(current, threshold, patient_ids=False))
        links = _patient_links(groups, split, patients, prefer) if patients is not None else None
        for group in groups:
            changes += _fix_group(group, table, keep, split, prefer, n_pass, patients, links)
        if len(changes) == before:
            break
    df = manifest.df.copy()
    df["split"] = split
    return manifest.with_df(df[keep]), changes


def fix_units(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The disjoint groups the rules run on: every near group, and every exact group not inside one."""
    return [g for g in groups if g["kind"] == "near" or g.get("near_group") is None]


def _unsplit_patients(
    table, keep: np.ndarray, split: np.ndarray, patients: np.ndarray, prefer: str
) -> list[dict[str, Any]]:
    """Move every patient with kept rows in several splits wholly to ``prefer`` (patient-level leakage)."""
    out = []
    frame = pd.DataFrame({"patient": patients[keep], "split": split[keep], "row": np.flatnonzero(keep)})
    for patient, rows in frame.groupby("patient", sort=True):
        splits = sorted(set(rows["split"]))
        if len(splits) < 2:
            continue
        reason = f"patient {patient} has cases in splits {splits}"
        for r in rows["row"]:
            if split[r] != prefer:
                out.append(_change("move", table.iloc[r], reason, None, from_split=split[r], to_split=prefer))
                split[r] = prefer
    return out


def _patient_links(
    groups: list[dict[str, Any]], split: np.ndarray, patients: np.ndarray, prefer: str
) -> Counter:
    """How many groups link each (patient outside ``prefer``, patient in ``prefer``) pair."""
    links: Counter = Counter()
    for g in groups:
        rows = [m["row"] for m in g["members"]]
        outside = {patients[r] for r in rows if split[r] != prefer}
        inside = {patients[r] for r in rows if split[r] == prefer}
        links.update((a, b) for a in outside for b in inside if a != b)
    return links


def _move_patients(
    group: dict[str, Any],
    kept: list[dict],
    table,
    keep: np.ndarray,
    split: np.ndarray,
    prefer: str,
    n_pass: int,
    gid,
    patients: np.ndarray,
    links: Counter,
) -> list[dict[str, Any]]:
    """Rule 3 for patient-grouped data: move the group's patients outside ``prefer`` wholly, given
    evidence."""
    outside = {patients[m["row"]] for m in kept if split[m["row"]] != prefer}
    inside = {patients[m["row"]] for m in kept if split[m["row"]] == prefer}
    exact = group["n_exact_sets"] < len(group["members"])
    if not exact and not any(links[(a, b)] >= MIN_SHARED_GROUPS for a in outside for b in inside):
        return []  # one look-alike slice pair between different patients is not a duplicated patient
    reason = (
        f"{group['kind']} duplicate group links patients {sorted(outside)} to {prefer} patients "
        f"{sorted(inside)}"
    )
    out = []
    for r in np.flatnonzero(keep & np.isin(patients, sorted(outside)) & (split != prefer)):
        out.append(
            _change("move", table.iloc[r], reason, gid, from_split=split[r], to_split=prefer, n_pass=n_pass)
        )
        split[r] = prefer
    return out


def _fix_group(
    group: dict[str, Any],
    table,
    keep: np.ndarray,
    split: np.ndarray,
    prefer: str,
    n_pass: int,
    patients: np.ndarray | None = None,
    links: Counter | None = None,
) -> list[dict[str, Any]]:
    gid = _pass_id(group["id"], n_pass)
    members = group["members"]
    out = []
    if group["label_conflict"]:
        reason = f"duplicate group with conflicting labels {group['labels']}"
        for m in members:
            if not keep[m["row"]]:
                continue  # never drop (or record) an image twice
            keep[m["row"]] = False
            out.append(
                _change("drop", table.iloc[m["row"]], reason, gid, from_split=split[m["row"]], n_pass=n_pass)
            )
        return out
    kept = []
    for set_id in sorted({m["exact_set"] for m in members}):
        same = sorted(
            (m for m in members if m["exact_set"] == set_id),
            key=lambda m: (split[m["row"]] != prefer, m["row"]),
        )
        kept.append(same[0])
        exact_gid = _pass_id(same[0].get("exact_group") or group["id"], n_pass)
        for m in same[1:]:
            if not keep[m["row"]]:
                continue
            keep[m["row"]] = False
            out.append(
                _change(
                    "drop",
                    table.iloc[m["row"]],
                    f"exact duplicate of {same[0]['path']}",
                    exact_gid,
                    from_split=split[m["row"]],
                    n_pass=n_pass,
                )
            )
    if len({split[m["row"]] for m in kept}) > 1 and patients is not None:
        return out + _move_patients(group, kept, table, keep, split, prefer, n_pass, gid, patients, links)
    if len({split[m["row"]] for m in kept}) > 1:
        reason = f"{group['kind']} duplicate group spans splits {sorted({split[m['row']] for m in kept})}"
        for m in kept:
            if split[m["row"]] != prefer:
                out.append(
                    _change(
                        "move",
                        table.iloc[m["row"]],
                        reason,
                        gid,
                        from_split=split[m["row"]],
                        to_split=prefer,
                        n_pass=n_pass,
                    )
                )
                split[m["row"]] = prefer
    return out


def _pass_id(group_id: int, n_pass: int) -> int | str:
    """A group's id as recorded in a change: the audit.json id in pass 1, ``pass<N>-<id>`` later."""
    return group_id if n_pass == 1 else f"pass{n_pass}-{group_id}"


def _change(
    action: str, row, reason: str, group, from_split: str | None = None, to_split: str = "", n_pass: int = 1
) -> dict[str, Any]:
    return {
        "action": action,
        "path": row.path,
        "case_id": row.case_id,
        "reason": reason,
        "group": group,
        "from_split": row.split if from_split is None else from_split,
        "to_split": to_split,
        "pass": n_pass,
    }


def fix_manifest(manifest: Manifest, **kwargs) -> tuple[Manifest, list[dict[str, Any]], Any]:
    """Audit ``manifest`` and clean it in memory (what ``medlens train --audit-fix`` does).

    Args:
        manifest: the manifest to clean.
        **kwargs: passed to :func:`medlens.auditing.run.audit` (``prefer``, ``near_threshold``, ``workers``,
            ``progress``, ``out_dir``...); ``fix`` is not accepted because nothing is written here.

    Returns:
        ``(clean_manifest, changes, audit_result)``; the result's audit.json dict carries a ``fix`` block.
    """
    # deferred: import cycle, medlens.auditing.run imports apply_fix from this module at module level
    from medlens.auditing.run import audit, fix_record

    if "fix" in kwargs:
        raise MedlensError(
            "fix_manifest() cleans in memory; save the returned manifest instead of passing fix"
        )
    prefer = kwargs.get("prefer", "train")
    out_dir = kwargs.pop("out_dir", None)
    result = audit(manifest, **kwargs)
    clean, changes = apply_fix(result.manifest, result, prefer=prefer)
    result.fixed, result.changes = clean, changes
    result.summary["fix"] = fix_record(changes, prefer, None, len(result.manifest), len(clean))
    if out_dir is not None:  # written after the fix so audit.json records it
        result.out_dir = write_report(result, Path(out_dir))
    return clean, changes, result
