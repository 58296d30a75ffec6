"""What kind of medlens output a file or folder is, told from its content (for the output rules of
:func:`medlens.utils.files.check_output_path`).

Folders that medlens adds to (an evaluation, predictions, explanations, an audit, a worklist) carry a
``.medlens-run`` marker of their kind from now on; those written before markers existed are recognised by the
files they hold. A file output (a plan, a manifest, an HTML report) may only replace a file of its own kind,
recognised by its first bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Marker kinds of the folders medlens adds to, and what each is called in messages.
FOLDER_KINDS = {
    "run": "run folder",
    "volumes": "convert output",
    "curve": "learning-curve folder",
    "evaluation": "evaluation folder",
    "predictions": "predictions folder",
    "explanations": "explanations folder",
    "audit": "audit folder",
    "worklist": "worklist folder",
    "search": "search folder",
}


def legacy_folder_kind(folder: Path) -> str | None:
    """The kind of an unmarked folder an earlier medlens wrote, from the files it holds (None: not one)."""
    has = lambda name: (folder / name).is_file()  # noqa: E731
    if has("summary.json") and has("report.html") and has("predictions.csv") and not has("model.pt"):
        return "evaluation"
    if has("explain.json"):
        return "explanations"
    if has("audit.json") and has("audit.html"):
        return "audit"
    if has("worklist.json") or has("worklist.csv"):
        return "worklist"
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return None
    if names and all(n.endswith(("_mask.png", "_overlay.png", "_box.png", "_mask.nii.gz")) for n in names):
        return "predictions"
    return None


def _head(path: Path, n: int = 4096) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(n).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _is_plan(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "fingerprint" in data and "choices" in data


def _is_manifest(path: Path) -> bool:
    header = _head(path, 2048).splitlines()[:1]
    columns = [c.strip().strip('"') for c in header[0].split(",")] if header else []
    return "case_id" in columns and "image" in columns


def _is_report(path: Path) -> bool:
    return "<title>medlens" in _head(path)


#: File kinds: a file output may replace an existing file only of its own kind.
FILE_KINDS = {
    "plan": (_is_plan, "plan JSON"),
    "manifest": (_is_manifest, "manifest CSV"),
    "report": (_is_report, "medlens HTML report"),
}


def is_file_of_kind(path: Path, kind: str) -> bool:
    """Whether the existing file ``path`` is a medlens output of ``kind`` (see :data:`FILE_KINDS`)."""
    test, _ = FILE_KINDS[kind]
    return path.is_file() and test(path)
