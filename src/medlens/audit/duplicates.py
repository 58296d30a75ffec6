"""Exact and near-duplicate groups, and whether each one leaks across splits, labels or patients.

Candidate pairs come from the multi-index hash (pHash distance ≤ threshold; identical pixels give
distance 0). A candidate is kept when the two images' structure signatures (32 × 32 high-pass, see
:func:`medlens.audit.hashing.fingerprint`) also correlate ≥ 0.7: the 64-bit pHash mostly encodes the head's
outline, so on the brain-MRI set at distance ≤ 6 it pairs some plainly different slices (an axial glioma
and a meningioma); the check removes most of them without losing re-encoded, resized or 2 % cropped
copies. Pairs are merged with a union-find in order of increasing distance, and two
groups are joined only while every pair of members stays within the threshold (complete linkage): plain
connected components chain through look-alike slices into 100-image "groups" whose members differ by up
to 30 bits. Near (not pixel-identical) groups of neighbouring slices of one patient in one split are tagged
``same-patient`` and not counted as findings: slice stacks are made of look-alikes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medlens.audit.hashing import phash_hex
from medlens.audit.mih import HammingIndex

# Chosen by tests/test_audit_threshold.py (numbers in its docstring): every JPEG (q75) and 0.8x resize
# matches, 2-3 % crops >= 93 %, distinct slices of different patients 0 of 64 620 pairs; at 8 the
# brain-MRI set gains mostly false cross-label pairs (6 -> 45 even with the signature check).
DEFAULT_THRESHOLD = 6
MIN_CORRELATION = 0.7


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))
        self.members = {i: [i] for i in range(n)}

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        if len(self.members[a]) < len(self.members[b]):
            a, b = b, a
        self.parent[b] = a
        self.members[a] += self.members.pop(b)


def duplicate_components(phashes: np.ndarray, threshold: int, signatures: np.ndarray | None = None,
                         min_correlation: float = MIN_CORRELATION) -> list[list[int]]:
    """Groups (sorted position lists, ≥ 2 members) whose members are pairwise within ``threshold`` bits.

    Args:
        phashes: one 64-bit hash per image.
        threshold: largest Hamming distance of a near-duplicate pair.
        signatures: optional (n, 256) signatures; pairs correlating below ``min_correlation`` are dropped.
        min_correlation: see ``signatures``.
    """
    h = np.asarray(phashes, dtype=np.uint64)
    if len(h) < 2:
        return []
    i, j, d = HammingIndex(h, threshold).pairs()
    if signatures is not None and len(i):
        sig = np.asarray(signatures, dtype=np.float32)
        corr = np.einsum("ij,ij->i", sig[i], sig[j])
        flat = ~sig.any(axis=1)
        keep = (corr >= min_correlation) | (flat[i] & flat[j])
        i, j, d = i[keep], j[keep], d[keep]
    uf = _UnionFind(len(h))
    for e in np.lexsort((j, i, d)):
        a, b = uf.find(int(i[e])), uf.find(int(j[e]))
        if a == b:
            continue
        ma, mb = uf.members[a], uf.members[b]
        if len(ma) * len(mb) > 1 and np.bitwise_count(h[ma][:, None] ^ h[mb][None, :]).max() > threshold:
            continue  # joining would put two members further apart than the threshold
        uf.union(a, b)
    return sorted((sorted(m) for m in uf.members.values() if len(m) > 1), key=lambda m: m[0])


def find_duplicate_groups(table: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD,
                          patient_ids: bool | None = None) -> list[dict[str, Any]]:
    """Duplicate groups among the readable rows of an audit table.

    Args:
        table: per-image audit table (columns row, path, split, label, patient_id, readable, pixel_hash,
            phash).
        threshold: largest pHash Hamming distance that counts as a near duplicate.
        patient_ids: whether patient ids are real (else a group is never "cross-patient"); by default true
            when some patient_id differs from its case_id.

    Returns:
        Groups as audit.json dicts, most serious first (label conflicts, then leakage, then size).
    """
    t = table[table["readable"]].reset_index(drop=True)
    if patient_ids is None:
        patient_ids = bool((t["patient_id"].astype(str) != t["case_id"].astype(str)).any())
    phashes = np.array([int(v) for v in t["phash"]], dtype=np.uint64)
    signatures = np.stack(t["signature"].to_numpy()) if len(t) else None
    groups = [_describe(t, m, phashes, patient_ids)
              for m in duplicate_components(phashes, threshold, signatures)]
    groups.sort(key=lambda g: (not g["label_conflict"], not g["cross_split"], g["same_patient"], -g["size"],
                               g["members"][0]["path"]))
    for n, g in enumerate(groups, start=1):
        g["id"] = n
    return groups


def _describe(t: pd.DataFrame, members: list[int], phashes: np.ndarray, patient_ids: bool) -> dict[str, Any]:
    rows = t.iloc[members]
    pix = rows["pixel_hash"].tolist()
    set_ids = {h: k for k, h in enumerate(dict.fromkeys(pix))}
    has_label = "label" in rows.columns
    out_members = [{
        "path": r.path, "image": r.image, "case_id": r.case_id, "split": r.split,
        "label": r.label if has_label else "", "patient_id": r.patient_id, "row": int(r.row),
        "pixel_hash": r.pixel_hash, "phash": phash_hex(phashes[m]), "exact_set": set_ids[r.pixel_hash],
    } for m, r in zip(members, rows.itertuples(index=False))]
    sub = phashes[members]
    splits = sorted(set(rows["split"]))
    labels = sorted(set(rows["label"])) if has_label else []
    patients = sorted(set(rows["patient_id"]))
    flags = []
    cross_split, conflict = len(splits) > 1, len(labels) > 1
    cross_patient = patient_ids and len(patients) > 1
    # Neighbouring slices of one scan look alike by nature: a near group inside one patient and one split
    # is expected, not a finding (an exact copy, or one that crosses splits or labels, still is).
    same_patient = (patient_ids and len(patients) == 1 and len(set_ids) == len(members) and not cross_split
                    and not conflict)
    for flag, on in (("cross-split", cross_split), ("cross-label", conflict),
                     ("cross-patient", cross_patient), ("same-patient", same_patient)):
        if on:
            flags.append(flag)
    return {
        "id": 0, "kind": "exact" if len(set_ids) == 1 else "near", "size": len(members), "same_patient": same_patient,
        "max_distance": int(np.bitwise_count(sub[:, None] ^ sub[None, :]).max()),
        "n_exact_sets": len(set_ids), "splits": splits, "labels": labels,
        "cross_split": cross_split, "label_conflict": conflict, "cross_patient": cross_patient,
        "flags": flags or ["within-split"], "members": out_members,
    }


def duplicates_summary(groups: list[dict[str, Any]], threshold: int) -> dict[str, Any]:
    """The ``duplicates`` block of audit.json."""
    return {
        "hash": "phash-dct-64", "threshold": int(threshold),
        "verification": {"signature": "32x32 high-pass", "min_correlation": MIN_CORRELATION},
        "n_groups": len(groups),
        "n_exact_groups": sum(g["kind"] == "exact" for g in groups),
        "n_near_groups": sum(g["kind"] == "near" for g in groups),
        "n_cross_split": sum(g["cross_split"] for g in groups),
        "n_label_conflict": sum(g["label_conflict"] for g in groups),
        "n_cross_patient": sum(g["cross_patient"] for g in groups),
        "n_same_patient": sum(g["same_patient"] for g in groups),
        "n_images_in_groups": sum(g["size"] for g in groups),
        "groups": groups,
    }
