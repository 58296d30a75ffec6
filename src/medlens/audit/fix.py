"""Clean a manifest from its audit: drop broken files and duplicates, close train/test leakage.

Rules, in order, for every duplicate group:
1. a group whose members carry different labels is dropped entirely (which label is right is unknowable);
2. of each set of pixel-identical members one is kept, preferably the one in the ``prefer`` split;
3. if the remaining members still span several splits, all of them move to ``prefer`` (train by default).
Unreadable files are dropped. Groups are recomputed after each pass on the cleaned rows until nothing
changes, so re-auditing the cleaned manifest finds no cross-split group.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medlens.audit.duplicates import find_duplicate_groups
from medlens.data.manifest import Manifest
from medlens.errors import MedlensError

MAX_PASSES = 10


def apply_fix(manifest: Manifest, result, prefer: str = "train") -> tuple[Manifest, list[dict[str, Any]]]:
    """Apply the cleaning rules to ``manifest`` using an :class:`~medlens.audit.run.AuditResult` of it.

    Returns:
        The cleaned manifest and one change record per affected case: ``{"action": "drop" | "move",
        "path", "reason", "group", "from_split", "to_split", "pass"}`` (``group`` is the audit.json group
        id for the first pass, None for unreadable files).
    """
    if prefer not in ("train", "test"):
        raise MedlensError(f"prefer must be 'train' or 'test', got {prefer!r}")
    table = result.table
    if len(table) != len(manifest) or list(table["path"]) != manifest.paths():
        raise MedlensError(f"the audit result does not match manifest {manifest.source or manifest.root} "
                           f"({len(table)} vs {len(manifest)} rows); audit this manifest, then fix it")
    threshold = int(result.summary["duplicates"]["threshold"])
    keep = table["readable"].to_numpy().copy()
    split = manifest.df["split"].to_numpy(dtype=object).copy()
    changes = [_change("drop", r, f"unreadable: {r.reason}", None, "") for r in
               table[~table["readable"]].itertuples(index=False)]
    for n_pass in range(1, MAX_PASSES + 1):
        current = table[keep].copy()
        current["split"] = split[current["row"].to_numpy()]
        before = len(changes)
        for group in find_duplicate_groups(current, threshold, patient_ids=False):
            changes += _fix_group(group, table, keep, split, prefer, n_pass)
        if len(changes) == before:
            break
    df = manifest.df.copy()
    df["split"] = split
    return manifest.with_df(df[keep]), changes


def _fix_group(group: dict[str, Any], table, keep: np.ndarray, split: np.ndarray, prefer: str,
               n_pass: int) -> list[dict[str, Any]]:
    gid = group["id"] if n_pass == 1 else f"pass{n_pass}-{group['id']}"
    members = group["members"]
    out = []
    if group["label_conflict"]:
        reason = f"duplicate group with conflicting labels {group['labels']}"
        for m in members:
            keep[m["row"]] = False
            out.append(_change("drop", table.iloc[m["row"]], reason, gid, from_split=split[m["row"]],
                               n_pass=n_pass))
        return out
    kept = []
    for set_id in sorted({m["exact_set"] for m in members}):
        same = sorted((m for m in members if m["exact_set"] == set_id),
                      key=lambda m: (split[m["row"]] != prefer, m["row"]))
        kept.append(same[0])
        for m in same[1:]:
            keep[m["row"]] = False
            out.append(_change("drop", table.iloc[m["row"]], f"exact duplicate of {same[0]['path']}", gid,
                               from_split=split[m["row"]], n_pass=n_pass))
    if len({split[m["row"]] for m in kept}) > 1:
        reason = f"{group['kind']} duplicate group spans splits {sorted({split[m['row']] for m in kept})}"
        for m in kept:
            if split[m["row"]] != prefer:
                out.append(_change("move", table.iloc[m["row"]], reason, gid, from_split=split[m["row"]],
                                   to_split=prefer, n_pass=n_pass))
                split[m["row"]] = prefer
    return out


def _change(action: str, row, reason: str, group, from_split: str | None = None, to_split: str = "",
            n_pass: int = 1) -> dict[str, Any]:
    return {"action": action, "path": row.path, "case_id": row.case_id, "reason": reason, "group": group,
            "from_split": row.split if from_split is None else from_split, "to_split": to_split,
            "pass": n_pass}


def fix_manifest(manifest: Manifest, **kwargs) -> tuple[Manifest, list[dict[str, Any]], Any]:
    """Audit ``manifest`` and clean it in memory (what ``medlens train --audit-fix`` does).

    Args:
        manifest: the manifest to clean.
        **kwargs: passed to :func:`medlens.audit.run.audit` (``prefer``, ``near_threshold``, ``workers``,
            ``progress``, ``out_dir``...); ``fix`` is not accepted because nothing is written here.

    Returns:
        ``(clean_manifest, changes, audit_result)``; the result's audit.json dict carries a ``fix`` block.
    """
    from medlens.audit.run import audit, fix_record

    if "fix" in kwargs:
        raise MedlensError("fix_manifest() cleans in memory; save the returned manifest instead of "
                           "passing fix")
    prefer = kwargs.get("prefer", "train")
    out_dir = kwargs.pop("out_dir", None)
    result = audit(manifest, **kwargs)
    clean, changes = apply_fix(result.manifest, result, prefer=prefer)
    result.fixed, result.changes = clean, changes
    result.summary["fix"] = fix_record(changes, prefer, None, len(result.manifest), len(clean))
    if out_dir is not None:  # written after the fix so audit.json records it
        from pathlib import Path

        from medlens.audit.report import write_report

        result.out_dir = write_report(result, Path(out_dir))
    return clean, changes, result
