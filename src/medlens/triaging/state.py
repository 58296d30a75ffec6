"""The reading state of a worklist folder: who read which study, and which run the folder belongs to.

``worklist_state.json`` maps study id -> ``{"status", "read_by", "read_at", "finding", "reads"}``: the first
four keys are the latest read (the contract since worklists began), ``reads`` keeps every reader's read
(``{"reader", "read_at", "finding"}``, one current read per reader, oldest first). ``worklist.json``
records the run the list was built from (``run``): a folder holds the list of one run, because the
priorities of two models cannot be ranked against each other.

Study ids are made unique when a list is built (:func:`unique_ids`), so one id names one study.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medlens.errors import MedlensError

STATE_FILE = "worklist_state.json"
WORKLIST_JSON = "worklist.json"
#: The keys of a state entry that a row shows (``reads`` included).
STATE_KEYS = ("status", "read_by", "read_at", "finding", "reads")
#: Separates a study id given more than once from its number on the list ("S1#2").
DUPLICATE_MARK = "#"


def load_state(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The reading state of a worklist folder (empty when it has none).

    Raises:
        MedlensError: a state file that is not a JSON mapping of study id -> entry.
    """
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise MedlensError(
            f"worklist state {path} is not readable JSON ({err}); restore it from a backup or delete it "
            "to start every study as unread"
        ) from err
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise MedlensError(
            f"worklist state {path} must map study id -> {{status, read_by, read_at, finding}}; "
            "restore it or delete it to start every study as unread"
        )
    return data


def unique_ids(ids: Sequence[str]) -> list[str]:
    """The study ids made unique: an id given n > 1 times becomes ``id#1`` ... ``id#n`` in input order.

    Every copy is numbered (none keeps the bare id), so the id as given names no study on its own and
    :func:`find_study` can list the candidates instead of picking one.
    """
    counts = Counter(ids)
    taken = set(ids)
    numbered: Counter[str] = Counter()
    out = []
    for sid in ids:
        if counts[sid] == 1:
            out.append(sid)
            continue
        n = numbered[sid] + 1
        while f"{sid}{DUPLICATE_MARK}{n}" in taken:  # an id that already looks numbered
            n += 1
        numbered[sid] = n
        out.append(f"{sid}{DUPLICATE_MARK}{n}")
        taken.add(out[-1])
    return out


def find_study(rows: Sequence[Mapping[str, Any]], study: str, where: Path) -> Mapping[str, Any]:
    """The one row of ``rows`` whose id is ``study``.

    Raises:
        MedlensError: no such study, or ``study`` names several (listing them with their inputs).
    """
    matches = [r for r in rows if r.get("study") == study]
    if len(matches) == 1:
        return matches[0]
    numbered = [r for r in rows if r.get("study_given") == study]
    candidates = matches or numbered
    if not candidates:
        raise MedlensError(
            f"study {study!r} is not on the worklist {where}; check the study id (column 'study')"
        )
    listed = ", ".join(f"{r.get('study')} ({r.get('input')})" for r in candidates)
    todo = (
        "rebuild the worklist with medlens triage, which gives each its own id"
        if matches
        else "give the id of the one you read"
    )
    raise MedlensError(
        f"study {study!r} names {len(candidates)} studies of the worklist {where}: {listed}; {todo}"
    )


def reads_of(entry: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every reader's read of a state entry, oldest first (an entry from before ``reads`` gives its one)."""
    if not entry:
        return []
    reads = entry.get("reads")
    if isinstance(reads, list):
        return [dict(r) for r in reads if isinstance(r, Mapping)]
    if entry.get("status") == "read" and entry.get("read_by"):
        return [
            {"reader": entry["read_by"], "read_at": entry.get("read_at"), "finding": entry.get("finding")}
        ]
    return []


def add_read(
    entry: Mapping[str, Any] | None, reader: str, read_at: str, finding: str | None
) -> dict[str, Any]:
    """The state entry after ``reader`` read the study: their read replaces their own earlier one only.

    Returns:
        ``{"status": "read", "read_by", "read_at", "finding"}`` of this read, plus ``reads`` (every reader's
        current read, oldest first, this one last).
    """
    reads = [r for r in reads_of(entry) if r.get("reader") != reader]
    reads.append({"reader": reader, "read_at": read_at, "finding": finding})
    return {"status": "read", "read_by": reader, "read_at": read_at, "finding": finding, "reads": reads}


def recorded_run(out_dir: str | Path) -> dict[str, Any] | None:
    """The run a worklist folder was built from (None: no worklist yet, or one from before it was kept)."""
    path = Path(out_dir) / WORKLIST_JSON
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError, AttributeError):
        return None  # an unreadable list is rebuilt whole; nothing of another run can be lost in it
    return run if isinstance(run, dict) else None


def check_run(out_dir: str | Path, run: Mapping[str, Any] | None) -> None:
    """Refuse to build ``run``'s list in a folder that holds another run's list.

    Raises:
        MedlensError: the folder's ``worklist.json`` was built from another run, naming both.
    """
    before = recorded_run(out_dir)
    if not run or not before or before.get("path") == run.get("path"):
        return
    raise MedlensError(
        f"worklist folder {out_dir} holds the worklist of run {before.get('path')} ({before.get('task')}); "
        f"this is run {run.get('path')} ({run.get('task')}), and the priorities of two models cannot be "
        "ranked in one list: triage into another folder (-o)"
    )


def run_identity(run_dir: str | Path, task: str) -> dict[str, str]:
    """How a worklist records its run: the run folder's absolute path and its task."""
    return {"path": str(Path(run_dir).resolve()), "task": task}
