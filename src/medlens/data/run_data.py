"""A run's own data: its manifest.csv with paths that still resolve when the run folder was copied or moved,
and the folder its images live in (which no output may be written into).

``medlens train`` writes the manifest's image paths relative to the run folder, and records in train.json
(``manifest_root``) the absolute folder they were written against. A run read from elsewhere (copied to
another disk, unpacked from an archive) first resolves them against its own folder, then against that
recorded one; whatever still cannot be found is counted, never silently dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from medlens.data.manifest import NPZ_SEP, Manifest
from medlens.errors import MedlensError
from medlens.utils.files import data_folder

MANIFEST = "manifest.csv"


@dataclass
class RunData:
    """The run's manifest as resolved, and how many of its image paths exist.

    Attributes:
        manifest: the manifest, rooted where most of its paths are found.
        n_found: image paths that exist.
        missing: the first few paths that do not (as resolved).
        root_note: how the paths were resolved when not against the run folder itself, else "".
    """

    manifest: Manifest
    n_found: int
    missing: list[str]
    root_note: str = ""


def load_run_manifest(run_dir: str | Path) -> RunData:
    """The run's manifest.csv, resolved against the run folder, else against where it was trained.

    Raises:
        MedlensError: the run has no manifest.csv.
    """
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not path.is_file():
        raise MedlensError(f"{run_dir} has no {MANIFEST}; the run's training data is unknown")
    here = Manifest.load(path)
    best = _resolved(here)
    if best.n_found == len(here):
        return best
    root = _trained_root(run_dir)
    if root is not None and Path(root) != here.root:
        there = _resolved(Manifest(here.df, Path(root), source=str(path)))
        if there.n_found > best.n_found:
            there.root_note = f"paths resolved against {root}, the folder the run was trained in"
            return there
    return best


def run_data_folder(run_dir: str | Path) -> Path | None:
    """The folder the run's training images live in: None when unknown, scattered, arrays in an npz file,
    or when the run itself lies inside it (then the user keeps runs beside the data on purpose)."""
    path = Path(run_dir) / MANIFEST
    try:
        manifest = Manifest.load(path) if path.is_file() else None
        if manifest is None or manifest.df["image"].astype(str).str.contains(NPZ_SEP, regex=False).any():
            return None
        folder = data_folder(manifest)
    except (MedlensError, OSError, ValueError):
        return None
    run = Path(os.path.realpath(run_dir))
    return None if folder is None or folder == run or folder in run.parents else folder


def _resolved(manifest: Manifest) -> RunData:
    found, missing = 0, []
    for p in manifest.paths():
        if os.path.exists(p.split(NPZ_SEP)[0]):
            found += 1
        elif len(missing) < 3:
            missing.append(p)
    return RunData(manifest, found, missing)


def _trained_root(run_dir: Path) -> str | None:
    try:
        info = json.loads((run_dir / "train.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    root = info.get("manifest_root") if isinstance(info, dict) else None
    return root if isinstance(root, str) and root else None
