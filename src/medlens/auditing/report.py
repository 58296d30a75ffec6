"""Write audit.json and a self-contained audit.html (inline CSS, figures and thumbnails as data URIs).

The HTML shows duplicates in two sections with their own counts: exact groups (every copy) and near groups
(one thumbnail per linked unit, an exact set marked "exact #id ×copies"); see
:mod:`medlens.auditing.duplicates`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from medlens.auditing.plots import all_figures, thumb_uri
from medlens.utils.files import atomic_write_text, mark_output, write_json

MAX_GROUPS = 150  # exact and near groups each drawn in the HTML (all are in audit.json)
MAX_MEMBERS = 8  # thumbnails per group
MAX_ROWS = 300  # rows of the unreadable / outlier / mask problem / change tables


def write_report(result, out_dir: Path) -> Path:
    """Write ``audit.html`` then ``audit.json`` into ``out_dir`` (each file replaced atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_output(out_dir, "audit")
    atomic_write_text(out_dir / "audit.html", render_html(result))
    write_json(out_dir / "audit.json", result.summary)
    return out_dir


def render_html(result) -> str:
    """The audit report as one HTML string."""
    import jinja2  # deferred: only writing the HTML report needs it, not importing medlens.auditing.run

    text = resources.files("medlens.auditing").joinpath("templates/audit.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    return env.from_string(text).render(**_context(result))


def _context(result) -> dict[str, Any]:
    s = result.summary
    thumbs = result.thumbs
    exact_groups, near_groups = _layer_groups(s["duplicates"]["groups"], thumbs)
    outliers = [{**o, "thumb": thumb_uri(thumbs.get(o["row"]))} for o in s["size_outliers"][:MAX_ROWS]]
    clusters = [
        {**c, "thumbs": [thumb_uri(thumbs.get(r)) for r in c["example_rows"]]}
        for c in s["clusters"].get("clusters", [])
    ]
    class_names = sorted({c for counts in s["classes"].values() for c in counts})
    fix = s.get("fix")
    volume_outliers = [
        {**o, "thumb": thumb_uri(thumbs.get(o["row"]))}
        for o in s.get("volumes", {}).get("spacing_outliers", [])[:MAX_ROWS]
    ]
    return {
        "s": s,
        "figures": all_figures(result.table, s),
        "exact_groups": exact_groups,
        "near_groups": near_groups,
        "outliers": outliers,
        "clusters": clusters,
        "class_names": class_names,
        "unreadable": s["unreadable"][:MAX_ROWS],
        "fix": fix,
        "changes": (fix or {}).get("changes", [])[:MAX_ROWS],
        "max_rows": MAX_ROWS,
        "max_groups": MAX_GROUPS,
        "volume_outliers": volume_outliers,
        "mask_problems": s.get("masks", {}).get("problems", [])[:MAX_ROWS],
    }


def _layer_groups(groups: list[dict[str, Any]], thumbs: dict[int, bytes]) -> tuple[list[dict], list[dict]]:
    """Exact and near groups to draw (at most MAX_GROUPS of each): every copy of an exact group, one
    thumbnail per unit (exact set or single image) of a near group."""
    exact, near = [], []
    for g in groups:
        if g["kind"] == "exact" and len(exact) < MAX_GROUPS:
            shown = [
                {**m, "thumb": thumb_uri(thumbs.get(m["row"])), "copies": 1}
                for m in g["members"][:MAX_MEMBERS]
            ]
            exact.append({**g, "shown": shown, "n_hidden": g["size"] - len(shown)})
        elif g["kind"] == "near" and len(near) < MAX_GROUPS:
            by_row = {m["row"]: m for m in g["members"]}
            units = g["units"]
            shown = [
                {
                    **by_row[u["row"]],
                    "thumb": thumb_uri(thumbs.get(u["row"])),
                    "copies": u["n_copies"],
                    "exact_group": u["exact_group"],
                }
                for u in units[:MAX_MEMBERS]
            ]
            near.append({**g, "shown": shown, "n_hidden": len(units) - len(shown)})
    return exact, near
