"""One-screen terminal summary of an audit (rich).

Duplicates are shown in their two layers (see :mod:`medlens.auditing.duplicates`), each with its own counts:
"N exact-duplicate groups (M images) ...", then "K near-duplicate groups linking U distinct images or exact
sets ...", then the most serious groups of each layer (a near group names the exact groups it links).
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from medlens.io.guard import skipped_lines
from medlens.utils.console import console as default_console

SHOW_GROUPS = 3  # per layer
SHOW_UNREADABLE = 10
SHOW_CHANGES = 10


def print_summary(result, console=None) -> None:
    """Print the findings, class balance, worst duplicate groups, clusters and fix in about one screen.

    Args:
        result: an :class:`~medlens.auditing.run.AuditResult`.
        console: a ``rich.console.Console``; by default one on stdout that never cuts piped lines.
    """

    console = console or default_console()
    s = result.summary
    timing = s.get("timing", {})
    console.print(
        f"[bold]medlens audit[/bold] {escape(s['source'])}: {s['n_images']} images, "
        f"{s['n_readable']} readable"
        + (f" ({timing['scan_s']:.1f} s, {timing['images_per_s']:.0f} images/s)" if timing else "")
    )
    findings = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    findings.add_column("check")
    findings.add_column("found", justify="right")
    for name, count in s["findings"].items():
        if name != "total":
            findings.add_row(name.replace("_", " "), f"[{'red' if count else 'green'}]{count}[/]")
    console.print(findings)
    _print_unreadable(console, s)
    _print_volumes_and_masks(console, s)
    _print_classes(console, s)
    _print_groups(console, s["duplicates"])
    clusters = s["clusters"]
    if clusters.get("k"):
        parts = ", ".join(
            f"{c['size']} @ {c['mean_intensity']:.0f}±{c['std_intensity']:.0f}" for c in clusters["clusters"]
        )
        console.print(f"intensity clusters: k = {clusters['k']} (best silhouette): {parts}")
    if s.get("fix"):
        _print_fix(console, s["fix"])


def _print_volumes_and_masks(console, s: dict[str, Any]) -> None:
    if "volumes" in s:
        v = s["volumes"]
        spacings = ", ".join(f"{k} mm: {n}" for k, n in list(v["spacings"].items())[:4])
        more = f" +{v['n_spacings'] - 4} more" if v["n_spacings"] > 4 else ""
        console.print(
            escape(
                f"volumes: {v['n_volumes']}, spacings {spacings}{more}; "
                f"{len(v['spacing_outliers'])} spacing/depth outliers"
            ),
            soft_wrap=True,
        )
    if "masks" in s:
        m = s["masks"]
        console.print(
            f"masks: {m['n_checked']} checked, [{'red' if m['n_problems'] else 'green'}]"
            f"{m['n_problems']} problems[/], {m['n_empty']} empty"
        )
        for p in m["problems"][:3]:
            console.print(escape(f"  mask problem: {p['reason']}"), soft_wrap=True)


def _print_classes(console, s: dict[str, Any]) -> None:
    if not s["classes"]:
        return
    ratios = s["class_balance"]["imbalance_ratio"]
    for split, counts in s["classes"].items():
        ratio = f"{ratios[split]:.2f}" if ratios.get(split) is not None else "a class is missing"
        console.print(
            escape(
                f"classes [{split}]: "
                + ", ".join(f"{k} {v}" for k, v in counts.items())
                + f"  (imbalance {ratio})"
            )
        )


def _print_unreadable(console, s: dict[str, Any]) -> None:
    """The one skipped-files line, each unreadable file by name (first SHOW_UNREADABLE), and read caveats."""

    for line in skipped_lines(
        s["unreadable"], s["n_images"], "audit.json", limit=SHOW_UNREADABLE, notes=s.get("read_notes")
    ):
        console.print(escape(line), soft_wrap=True)


def _red(count: int, text: str) -> str:
    return f"[{'red' if count else 'green'}]{count} {text}[/]"


def _print_groups(console, dups: dict[str, Any]) -> None:
    """The two layers with their own counts, then the most serious groups of each."""

    ex, ne = dups["exact"], dups["near"]
    console.print(
        f"duplicates: {ex['n_groups']} exact-duplicate groups ({ex['n_images']} images), "
        f"{_red(ex['n_cross_split'], 'cross-split')}, "
        f"{_red(ex['n_label_conflict'], 'label conflicts')}"
    )
    same = (
        f"; {dups['n_same_patient']} are neighbouring slices of one patient (not findings)"
        if dups.get("n_same_patient")
        else ""
    )
    console.print(
        f"  {ne['n_groups']} near-duplicate groups (pHash ≤ {dups['threshold']} bits) linking "
        f"{ne['n_units']} distinct images or exact sets ({ne['n_exact_groups_linked']} of them "
        f"exact groups; {ne['n_images']} images), {_red(ne['n_cross_split'], 'cross-split')}, "
        f"{_red(ne['n_label_conflict'], 'label conflicts')}{same}"
    )
    findings = [g for g in dups["groups"] if not g.get("same_patient")]
    for kind in ("exact", "near"):
        for g in [g for g in findings if g["kind"] == kind][:SHOW_GROUPS]:
            console.print(escape(_group_line(g)), soft_wrap=True)


def _group_line(g: dict[str, Any]) -> str:
    """``#5 near [cross-split] links exact #2 (3 copies) a.png (train/x), b.png (test/x)`` or
    ``#2 exact [cross-split]: a.png (train/x), c.png (test/x) +1``."""
    if g["kind"] == "near":
        by_row = {m["row"]: m for m in g["members"]}
        parts = [
            (f"exact #{u['exact_group']} ({u['n_copies']} copies) " if u["exact_group"] else "")
            + _member(by_row[u["row"]])
            for u in g["units"][:3]
        ]
        more = f" +{len(g['units']) - 3}" if len(g["units"]) > 3 else ""
        return f"  #{g['id']} near [{', '.join(g['flags'])}] links {', '.join(parts)}{more}"
    names = ", ".join(_member(m) for m in g["members"][:3])
    more = f" +{g['size'] - 3}" if g["size"] > 3 else ""
    return f"  #{g['id']} {g['kind']} [{', '.join(g['flags'])}]: {names}{more}"


def _member(m: dict[str, Any]) -> str:
    return f"{m['path']} ({m['split'] or '-'}/{m['label']})"


def _print_fix(console, fix: dict[str, Any]) -> None:
    where = f" -> {fix['manifest']}" if fix.get("manifest") else ""
    console.print(
        f"fix: {fix['n_before']} -> {fix['n_after']} cases, {fix['n_dropped']} dropped, "
        f"{fix['n_moved']} moved to {fix['prefer']}{escape(where)}"
    )
    for c in fix["changes"][:SHOW_CHANGES]:
        move = f" {c['from_split']} -> {c['to_split']}" if c["action"] == "move" else ""
        console.print(escape(f"  {c['action']}{move}: {c['path']} ({c['reason']})"), soft_wrap=True)
    if len(fix["changes"]) > SHOW_CHANGES:
        console.print(f"  ... {len(fix['changes']) - SHOW_CHANGES} more changes in audit.json")
