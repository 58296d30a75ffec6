"""Exact and near-duplicate groups, reported in two layers, and whether each one leaks across splits,
labels or patients.

**Exact layer.** Every set of ≥ 2 readable images with the same decoded-pixel hash (``pixel_hash``, see
:func:`medlens.data.hashing.pixel_hash`) is one group of ``kind: "exact"``, whatever near links exist.
Exact copies are always findings (never tagged ``same-patient``).

**Near layer.** The near-duplicate linkage runs over *units*: one representative per pixel set (an exact
group or a single image). Candidate pairs come from the multi-index hash (pHash distance ≤ threshold). A
candidate is kept when the two images' structure signatures (32 × 32 high-pass, see
:func:`medlens.data.hashing.fingerprint`) also correlate ≥ 0.7: the 64-bit pHash mostly encodes the head's
outline, so on the brain-MRI set at distance ≤ 6 it pairs some plainly different slices (an axial glioma
and a meningioma); the check removes most of them without losing re-encoded, resized or 2 % cropped
copies. Pairs are merged with a union-find in order of increasing distance, and two groups are joined only
while every pair of members stays within the threshold (complete linkage): plain connected components chain
through look-alike slices into 100-image "groups" whose members differ by up to 30 bits. A ``kind: "near"``
group joins ≥ 2 distinct units; its ``members`` are every image of those units (each member's
``exact_group`` names the exact group it belongs to, None for a single image) and its ``units`` list one
entry per unit. Its flags are over all its images; because it spans ≥ 2 distinct pixel sets, a cross-split
(or cross-label) near group always holds two *different* images in different splits (labels), so the near
flag is a finding of its own, not a repeat of an exact group's. Near groups of neighbouring slices of one
patient in one split are tagged ``same-patient`` and not counted as findings: slice stacks are made of
look-alikes (exact copies inside such a group are still counted in the exact layer).

**Counts** (the ``duplicates`` block of audit.json): ``n_groups`` = exact + near groups; ``n_exact_groups`` =
pixel-hash sets with ≥ 2 members; ``n_near_groups`` = near groups; ``n_cross_split``, ``n_label_conflict``
and ``n_cross_patient`` = sums over both layers (per layer in ``exact`` and ``near``); ``n_same_patient`` =
near groups tagged same-patient; ``n_images_in_groups`` = distinct images in any group (an image can be in
an exact and a near group). ``exact`` = ``{n_groups, n_images, n_redundant (copies beyond one per set),
n_cross_split, n_label_conflict, n_cross_patient}``; ``near`` = ``{n_groups, n_images, n_units,
n_exact_groups_linked, n_cross_split, n_label_conflict, n_cross_patient, n_same_patient}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medlens.auditing.mih import HammingIndex
from medlens.data.hashing import phash_hex

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


def duplicate_components(
    phashes: np.ndarray,
    threshold: int,
    signatures: np.ndarray | None = None,
    min_correlation: float = MIN_CORRELATION,
) -> list[list[int]]:
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


def pixel_units(pixel_hashes) -> list[list[int]]:
    """Positions grouped by identical pixel hash (units), in order of first appearance."""
    units: dict[str, list[int]] = {}
    for pos, h in enumerate(pixel_hashes):
        units.setdefault(h, []).append(pos)
    return list(units.values())


def find_duplicate_groups(
    table: pd.DataFrame, threshold: int = DEFAULT_THRESHOLD, patient_ids: bool | None = None
) -> list[dict[str, Any]]:
    """Exact and near-duplicate groups among the readable rows of an audit table (see the module docstring).

    Args:
        table: per-image audit table (columns row, path, split, label, patient_id, readable, pixel_hash,
            phash, signature).
        threshold: largest pHash Hamming distance that counts as a near duplicate.
        patient_ids: whether patient ids are real (else a group is never "cross-patient"); by default true
            when some patient_id differs from its case_id.

    Returns:
        Groups as audit.json dicts, most serious first (label conflicts, then leakage, then exact before near,
        then size). An exact group inside a near group appears in both (``near_group`` / ``exact_groups``).
    """
    t = table[table["readable"]].reset_index(drop=True)
    if patient_ids is None:
        patient_ids = bool((t["patient_id"].astype(str) != t["case_id"].astype(str)).any())
    phashes = np.array([int(v) for v in t["phash"]], dtype=np.uint64)
    units = pixel_units(t["pixel_hash"])
    groups = [_describe(t, u, phashes, patient_ids, "exact") for u in units if len(u) > 1]
    if len(units) > 1:
        reps = np.array([u[0] for u in units])
        signatures = np.stack(t["signature"].to_numpy()[reps])
        for linked in duplicate_components(phashes[reps], threshold, signatures):
            members = sorted(m for k in linked for m in units[k])
            groups.append(_describe(t, members, phashes, patient_ids, "near"))
    groups.sort(
        key=lambda g: (
            not g["label_conflict"],
            not g["cross_split"],
            g["same_patient"],
            g["kind"] != "exact",
            -g["size"],
            g["members"][0]["path"],
        )
    )
    _number_and_link(groups)
    return groups


def _describe(
    t: pd.DataFrame, members: list[int], phashes: np.ndarray, patient_ids: bool, kind: str
) -> dict[str, Any]:
    rows = t.iloc[members]
    set_ids = {h: k for k, h in enumerate(dict.fromkeys(rows["pixel_hash"]))}
    has_label = "label" in rows.columns
    out_members = [
        {
            "path": r.path,
            "image": r.image,
            "case_id": r.case_id,
            "split": r.split,
            "label": r.label if has_label else "",
            "patient_id": r.patient_id,
            "row": int(r.row),
            "pixel_hash": r.pixel_hash,
            "phash": phash_hex(phashes[m]),
            "exact_set": set_ids[r.pixel_hash],
            "exact_group": None,
        }
        for m, r in zip(members, rows.itertuples(index=False))
    ]
    sub = phashes[members]
    splits = sorted(set(rows["split"]))
    labels = sorted(set(rows["label"])) if has_label else []
    patients = sorted(set(rows["patient_id"]))
    cross_split, conflict = len(splits) > 1, len(labels) > 1
    cross_patient = patient_ids and len(patients) > 1
    # Neighbouring slices of one scan look alike by nature: a near group inside one patient and one split
    # is expected, not a finding (its exact copies still are, in the exact layer).
    same_patient = kind == "near" and patient_ids and len(patients) == 1 and not cross_split and not conflict
    flags = [
        flag
        for flag, on in (
            ("cross-split", cross_split),
            ("cross-label", conflict),
            ("cross-patient", cross_patient),
            ("same-patient", same_patient),
        )
        if on
    ]
    layer = {"near_group": None} if kind == "exact" else {"exact_groups": [], "units": []}
    return {
        "id": 0,
        "kind": kind,
        "size": len(members),
        "same_patient": same_patient,
        "max_distance": int(np.bitwise_count(sub[:, None] ^ sub[None, :]).max()),
        "n_exact_sets": len(set_ids),
        "splits": splits,
        "labels": labels,
        "cross_split": cross_split,
        "label_conflict": conflict,
        "cross_patient": cross_patient,
        "flags": flags or ["within-split"],
        **layer,
        "members": out_members,
    }


def _number_and_link(groups: list[dict[str, Any]]) -> None:
    """Number the groups 1.. in order; tie each near group's members and units to their exact groups."""
    for n, g in enumerate(groups, start=1):
        g["id"] = n
    exact = {g["members"][0]["pixel_hash"]: g for g in groups if g["kind"] == "exact"}
    for g in exact.values():
        for m in g["members"]:
            m["exact_group"] = g["id"]
    for g in groups:
        if g["kind"] != "near":
            continue
        units: dict[str, dict[str, Any]] = {}
        for m in g["members"]:
            owner = exact.get(m["pixel_hash"])
            if owner is not None:
                m["exact_group"], owner["near_group"] = owner["id"], g["id"]
            unit = units.setdefault(
                m["pixel_hash"],
                {"exact_group": m["exact_group"], "n_copies": 0, "path": m["path"], "row": m["row"]},
            )
            unit["n_copies"] += 1
        g["units"] = list(units.values())
        g["exact_groups"] = [u["exact_group"] for u in g["units"] if u["exact_group"] is not None]


def _layer_counts(groups: list[dict[str, Any]], kind: str) -> dict[str, int]:
    gs = [g for g in groups if g["kind"] == kind]
    counts = {"n_groups": len(gs), "n_images": sum(g["size"] for g in gs)}
    if kind == "exact":
        counts["n_redundant"] = counts["n_images"] - len(gs)
    else:
        counts["n_units"] = sum(len(g["units"]) for g in gs)
        counts["n_exact_groups_linked"] = sum(len(g["exact_groups"]) for g in gs)
    for key, field in (
        ("n_cross_split", "cross_split"),
        ("n_label_conflict", "label_conflict"),
        ("n_cross_patient", "cross_patient"),
    ):
        counts[key] = sum(bool(g[field]) for g in gs)
    if kind == "near":
        counts["n_same_patient"] = sum(bool(g["same_patient"]) for g in gs)
    return counts


def duplicates_summary(groups: list[dict[str, Any]], threshold: int) -> dict[str, Any]:
    """The ``duplicates`` block of audit.json (what each count means: see the module docstring)."""
    exact, near = _layer_counts(groups, "exact"), _layer_counts(groups, "near")
    both = {key: exact[key] + near[key] for key in ("n_cross_split", "n_label_conflict", "n_cross_patient")}
    return {
        "hash": "phash-dct-64",
        "threshold": int(threshold),
        "verification": {"signature": "32x32 high-pass", "min_correlation": MIN_CORRELATION},
        "n_groups": len(groups),
        "n_exact_groups": exact["n_groups"],
        "n_near_groups": near["n_groups"],
        **both,
        "n_same_patient": near["n_same_patient"],
        "n_images_in_groups": len({m["row"] for g in groups for m in g["members"]}),
        "exact": exact,
        "near": near,
        "groups": groups,
    }
