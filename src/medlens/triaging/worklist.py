"""The ranked worklist: every study exactly once, highest priority first; written as CSV, JSON and HTML.

Like FDA "QAS" triage devices, the worklist flags and reorders, it never removes a case: unreadable studies
are ranked first ("read first, unreadable: <reason>"), studies already read stay on it with status "read".
Ties go to the study that has waited longer (first in, first out), then to input order.

The reading status lives in ``worklist_state.json`` in the output folder (study id -> ``{"status",
"read_by", "read_at", "finding", "reads"}``, see :mod:`medlens.triaging.state`); re-running with new studies
keeps earlier studies' status, and :func:`mark_read` records one read and rewrites the outputs. A study id
given more than once is numbered (``S1#1``, ``S1#2``), and a folder holds the list of one run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from medlens import __version__
from medlens.errors import MedlensError
from medlens.triaging.config import TriageConfig
from medlens.triaging.history import history_for, history_index
from medlens.triaging.priority import UNREADABLE, FindingFn, as_aware, score_study
from medlens.triaging.state import (
    STATE_FILE,
    STATE_KEYS,
    WORKLIST_JSON,
    add_read,
    check_run,
    find_study,
    load_state,
    reads_of,
    recorded_run,
    unique_ids,
)
from medlens.utils.files import atomic_write_text, write_json

__all__ = ["build_worklist", "load_state", "mark_read", "rank_rows", "write_worklist"]

TEMPLATES = Path(__file__).parent / "templates"
FILES = {"csv": "worklist.csv", "json": WORKLIST_JSON, "html": "worklist.html", "state": STATE_FILE}
#: Row keys before and after the ``contrib_<factor>`` columns (CSV column order).
LEAD_COLUMNS = ("rank", "priority", "status", "study", "input", "patient_id", "prediction")
TAIL_COLUMNS = (
    "reason",
    "wait_minutes",
    "explain_png",
    "unreadable",
    "sort_key",
    "input_index",
    "read_by",
    "read_at",
    "finding",
    "reads",
)


def build_worklist(
    records: Sequence[Mapping[str, Any]],
    cfg: TriageConfig,
    finding_fn: FindingFn,
    history: pd.DataFrame | None = None,
    now: datetime | None = None,
    state: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rank the studies: rank 1 is read first.

    Args:
        records: study records, in arrival (input) order.
        cfg: the triage config.
        finding_fn: ``finding(record, cfg) -> (score, detail)`` of the task.
        history: the frame of :func:`medlens.triaging.history.load_history`, or None.
        now: the time waits are measured to (default: now, local time).
        state: study id -> ``{"status", "read_by", "read_at", "finding"}`` (see :func:`load_state`).

    Returns:
        One row per record (every record exactly once), sorted by rank: ``rank``, ``priority`` (rounded
        float, or "read first, unreadable"), ``sort_key`` (the numeric priority; +inf for unreadable),
        ``unreadable``, ``status`` ("unread"/"read"), ``read_by``, ``read_at``, ``finding``, ``reads``,
        ``study``, ``input``, ``input_index``, ``patient_id``, ``prediction``, ``contrib_<factor>`` per
        factor, ``reason``, ``wait_minutes``, ``explain_png``. A study id given n > 1 times is numbered
        ``id#1`` ... ``id#n`` in input order (``study_given`` keeps the id as given), so one id names
        one study.

    Raises:
        MedlensError: a weighted history column found neither in the history nor in any record, or a value
            the config cannot use (unknown referral level, ...).
    """
    now = as_aware(now or datetime.now())
    index = history_index(history)
    _check_history_columns(cfg, history, records)
    state = state or {}
    given = [str(r.get("study", r.get("input", ""))) for r in records]
    rows = []
    for i, (record, study) in enumerate(zip(records, unique_ids(given), strict=True)):
        hist = history_for(record, index)
        scored = score_study({**record, "study": study}, cfg, finding_fn, hist, now)
        row = _row(i, record, scored, cfg, state.get(study))
        if study != given[i]:
            row["study_given"] = given[i]
        rows.append(row)
    return rank_rows(rows)


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort rows by priority (unreadable first), then the longer wait, then input order; number the ranks."""
    ordered = sorted(
        rows,
        key=lambda r: (-_sort_key(r), -(r.get("wait_minutes") or 0.0), int(r.get("input_index") or 0)),
    )
    for rank, row in enumerate(ordered, start=1):
        row["rank"] = rank
    return ordered


def write_worklist(
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    cfg: TriageConfig,
    run: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``worklist.csv``, ``worklist.json``, ``worklist.html`` and ``worklist_state.json``, atomically.

    The state already in ``out_dir`` is merged in: a study read earlier stays read (the file wins over a
    row's "unread"); studies new to the folder are added as unread. The rows' status is updated to match.

    Args:
        rows: the rows of :func:`build_worklist`.
        out_dir: the worklist folder.
        cfg: the config the rows were built with.
        run: the run the rows come from (:func:`medlens.triaging.state.run_identity`), kept in
            ``worklist.json`` as ``run``.

    Returns:
        ``{"csv", "json", "html", "state"}`` -> written path.

    Raises:
        MedlensError: ``out_dir`` is a file, or holds the worklist of another run.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MedlensError(f"worklist output {out_dir} is a file, not a folder; choose another output folder")
    check_run(out_dir, run)
    run = run or recorded_run(out_dir)
    state = load_state(out_dir)
    for row in rows:
        entry = state.get(row["study"])
        if entry is None or (entry.get("status") != "read" and row.get("status") == "read"):
            entry = {k: row.get(k) for k in STATE_KEYS}
            entry["status"] = entry["status"] or "unread"
            state[row["study"]] = entry
        _apply_state(row, entry)
    paths = {name: out_dir / file for name, file in FILES.items()}
    write_json(paths["state"], state)
    _write_outputs(rows, paths, cfg, run)
    return paths


def mark_read(out_dir: str | Path, study: str, reader: str, finding: str | None = None) -> dict[str, Any]:
    """Record that ``reader`` read ``study``, and rewrite the worklist's files with its new status.

    Every reader's read is kept (one current read per reader): the entry's ``read_by``, ``read_at`` and
    ``finding`` are this read, its ``reads`` all of them.

    Returns:
        The study's new state entry ``{"status": "read", "read_by", "read_at", "finding", "reads"}``.

    Raises:
        MedlensError: no worklist in ``out_dir``, ``study`` not on it, or naming several studies.
    """
    out_dir = Path(out_dir)
    path = out_dir / FILES["json"]
    if not path.is_file():
        raise MedlensError(
            f"no worklist in {out_dir} ({FILES['json']} missing); build one first with medlens triage"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows, cfg = data["rows"], TriageConfig.from_dict(data["config"], source=str(path))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MedlensError(f"worklist {path} is not readable ({err}); build the worklist again") from err
    find_study(rows, study, path)
    state = load_state(out_dir)
    read_at = datetime.now().astimezone().isoformat(timespec="seconds")
    entry = state[study] = add_read(state.get(study), str(reader), read_at, finding)
    write_json(out_dir / STATE_FILE, state)
    for row in rows:
        if row.get("unreadable") and row.get("sort_key") is None:
            row["sort_key"] = math.inf  # JSON holds +inf as null
        _apply_state(row, state.get(row["study"]) or {"status": "unread"})
    paths = {name: out_dir / file for name, file in FILES.items()}
    _write_outputs(rows, paths, cfg, data.get("run"))
    return entry


# ---------------------------------------------------------------------------------------------------------


def _row(
    i: int, record: Mapping[str, Any], scored: dict[str, Any], cfg: TriageConfig, entry: Mapping | None
) -> dict[str, Any]:
    unreadable = scored["unreadable"]
    row: dict[str, Any] = {
        "rank": 0,
        "priority": UNREADABLE if unreadable else round(scored["priority"], 4),
        "sort_key": math.inf if unreadable else round(scored["priority"], 9),
        "unreadable": unreadable,
        "status": "unread",
        "read_by": None,
        "read_at": None,
        "finding": None,
        "reads": [],
        "study": scored["study"],
        "input": str(record.get("input", "")),
        "input_index": i,
        "patient_id": record.get("patient_id"),
        "prediction": record.get("prediction"),
    }
    for name in cfg.factors:
        row[f"contrib_{name}"] = round(scored["contributions"][name], 4)
    wait = scored["wait_minutes"]
    row["reason"] = scored["reason"]
    row["wait_minutes"] = None if wait is None else round(wait, 1)
    row["explain_png"] = record.get("explain_png")
    if entry:
        _apply_state(row, entry)
    return row


def _apply_state(row: dict[str, Any], entry: Mapping[str, Any]) -> None:
    row["status"] = "read" if entry.get("status") == "read" else "unread"
    for key in ("read_by", "read_at", "finding"):
        row[key] = entry.get(key)
    row["reads"] = reads_of(entry)


def _sort_key(row: Mapping[str, Any]) -> float:
    key = row.get("sort_key")
    if key is None:
        return math.inf if row.get("unreadable") else 0.0
    return float(key)


def _check_history_columns(
    cfg: TriageConfig, history: pd.DataFrame | None, records: Sequence[Mapping[str, Any]]
) -> None:
    columns = set(history.columns) if history is not None else set()
    for name in cfg.history_columns:
        if name not in columns and not any(name in r for r in records):
            known = ", ".join(c for c in columns if c != "patient_id") or "none: no history CSV given"
            raise MedlensError(
                f"the triage config weighs {name!r}, which is no history column (columns: {known}) and no "
                "study metadata column; fix the weight's name or add the column"
            )


def _write_outputs(
    rows: list[dict[str, Any]], paths: dict[str, Path], cfg: TriageConfig, run: Mapping | None = None
) -> None:
    generated = datetime.now().astimezone().isoformat(timespec="seconds")
    columns = _columns(rows, cfg)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    atomic_write_text(paths["csv"], buf.getvalue())
    data = {"config": cfg.to_dict(), "generated": generated, "rows": rows}
    if run:
        data["run"] = dict(run)
    write_json(paths["json"], data)
    atomic_write_text(paths["html"], _render_html(rows, cfg, paths["html"].parent, generated, columns))


def _csv_cell(value: Any) -> Any:
    """A CSV cell: empty for None, JSON for a list (a study's reads), the value otherwise."""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


def _columns(rows: list[dict[str, Any]], cfg: TriageConfig) -> list[str]:
    contrib = [f"contrib_{name}" for name in cfg.factors]
    known = {*LEAD_COLUMNS, *contrib, *TAIL_COLUMNS}
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in known]
    return [*LEAD_COLUMNS, *contrib, *TAIL_COLUMNS, *extra]


def _render_html(
    rows: list[dict[str, Any]], cfg: TriageConfig, out_dir: Path, generated: str, columns: list[str]
) -> str:
    import jinja2  # deferred: only the HTML needs it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # study names and reasons come from the data: never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    view = [
        {
            **row,
            "priority_text": row["priority"] if row.get("unreadable") else f"{float(row['priority']):.2f}",
            "wait_text": "" if row.get("wait_minutes") is None else _wait_text(row["wait_minutes"]),
            "png_href": _png_href(row.get("explain_png"), out_dir),
            "contribs": [(name, row.get(f"contrib_{name}")) for name in cfg.factors],
            "readers_text": ", ".join(str(r.get("reader")) for r in row.get("reads") or [])
            or row.get("read_by"),
        }
        for row in rows
    ]
    return env.get_template("worklist.html.j2").render(
        title="medlens worklist",
        rows=view,
        factors=cfg.factors,
        weights=cfg.weights,
        cfg=cfg,
        generated=generated,
        n_unread=sum(r["status"] != "read" for r in rows),
        n_unreadable=sum(bool(r.get("unreadable")) for r in rows),
        version=__version__,
    )


def _wait_text(minutes: float) -> str:
    from medlens.triaging.priority import format_wait

    return format_wait(float(minutes))


def _png_href(png: Any, out_dir: Path) -> str | None:
    """The explanation picture's path relative to the worklist folder, URL-quoted (None without one)."""
    if not png:
        return None
    path = str(png)
    if os.path.isabs(path):
        path = os.path.relpath(path, out_dir)
    return quote(Path(path).as_posix())
