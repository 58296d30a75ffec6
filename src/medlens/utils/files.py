"""Atomic writes: nothing medlens writes is ever left half-written."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medlens import __version__
from medlens.errors import MedlensError
from medlens.utils.output_kinds import FILE_KINDS, FOLDER_KINDS, is_file_of_kind, legacy_folder_kind

# mkstemp creates files readable by the owner only; give written files the usual mode (0o666 minus umask).
# The umask is read once here because reading it means setting it, which is not thread-safe later.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    ``suffix`` lets writers that pick a format from the file name (nibabel's ".nii.gz") see the real one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN written as null)."""
    return atomic_write_text(path, json_text(obj) + "\n")


def json_text(obj: Any, default: Any = None) -> str:
    """``obj`` as indented, valid JSON: NaN and ±inf become null (``json.dumps`` alone writes ``NaN``,
    which no JSON parser accepts), numpy values plain numbers, paths strings; ``default`` as in json.dumps."""
    return json.dumps(_clean(obj), indent=2, allow_nan=False, ensure_ascii=False, default=default)


def _clean(obj: Any) -> Any:
    import numpy as np  # deferred: the CLI imports this module at start-up (`medlens --help`)

    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` only if the block succeeds.

    A crash or Ctrl-C removes the temporary directory, so a half-finished run never looks finished.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise MedlensError(
            f"output directory {final} already exists; choose another name or pass --overwrite"
        )
    if final.exists() and not final.is_dir():  # checked before the temporary folder exists: no litter
        raise MedlensError(f"output {final} is a file, not a folder; choose another output folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


# --- Output folders medlens may replace -------------------------------------------------------------------

#: Marker file written into every folder medlens creates and may later replace with ``--overwrite``
#: (run directories and their ``.partial`` folder, convert outputs, learning-curve folders).
MARKER = ".medlens-run"


def write_marker(folder: str | Path, kind: str) -> Path:
    """Write ``folder/.medlens-run``: ``{"kind": kind, "created": ISO time, "medlens": version}``."""

    return write_json(
        Path(folder) / MARKER,
        {
            "kind": kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "medlens": __version__,
        },
    )


def read_marker(folder: str | Path) -> dict | None:
    """The marker of ``folder`` as a dict, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "kind" in data else None


def is_medlens_output(folder: str | Path) -> bool:
    """True when ``folder`` is a folder medlens wrote and may replace.

    A folder with a ``.medlens-run`` marker, or one written before markers existed (legacy): a run directory
    (``model.pt`` + ``train.json``), a convert output (``imagesTr/`` + a ``manifest.csv`` with an ``n_slices``
    column, no ``dataset.json``), a learning-curve folder (``curve.csv`` + ``fraction-*`` runs) or an
    interrupted run (``<name>.partial/checkpoints/``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if read_marker(folder) is not None:
        return True
    if (folder / "model.pt").is_file() and (folder / "train.json").is_file():
        return True
    if (folder / "manifest.csv").is_file() and (folder / "imagesTr").is_dir() and _convert_manifest(folder):
        return True
    if folder.name.endswith(".partial") and (folder / "checkpoints").is_dir():  # an interrupted run
        return True
    return (folder / "curve.csv").is_file() and any(folder.glob("fraction-*"))


def _convert_manifest(folder: Path) -> bool:
    """A manifest.csv that slices-to-volumes wrote (its n_slices column), not one ingested into a dataset."""
    try:
        with open(folder / "manifest.csv", encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return "n_slices" in header and not (folder / "dataset.json").exists()


def _is_empty_dir(folder: Path) -> bool:
    try:
        return folder.is_dir() and not any(folder.iterdir())
    except OSError:
        return False


def _resolved(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _source_paths(source: Any) -> list[tuple[Path, bool]]:
    """(resolved path, is-a-folder-source) pairs that an output must not be, contain or (for folders) lie in.

    A folder source is itself; a file source (CSV, manifest, npz, dataset.json) is the file plus the folder
    its images live in (the common folder of a CSV's image/mask paths, read cheaply); a Manifest is its root
    and source file.
    """
    if source is None:
        return []
    if hasattr(source, "df") and hasattr(source, "root"):  # a Manifest
        out = [(_resolved(source.root), False)]
        if getattr(source, "source", None) and Path(str(source.source)).is_file():
            out.append((_resolved(source.source), False))
        folder = _common_folder(source.df, Path(str(source.root)))
        return out + ([(folder, False)] if folder is not None else [])
    path = _resolved(source)
    if path.is_dir():
        return [(path, True)]
    out = [(path, False)]
    if path.suffix.lower() == ".csv" and path.is_file():
        folder = _common_folder(None, path.parent, csv=path)
        if folder is not None:
            out.append((folder, False))
    return out


def _common_folder(df: Any, root: Path, csv: Path | None = None) -> Path | None:
    """The deepest folder holding every image/mask of a manifest table (None if it cannot be told cheaply)."""
    try:
        if df is None:
            import pandas as pd  # deferred: the CLI imports this module at start-up (`medlens --help`)

            df = pd.read_csv(
                csv,
                dtype=str,
                keep_default_na=False,
                usecols=lambda c: c in ("image", "mask", "path", "filepath"),
            )
        folders = set()
        for column in df.columns:
            if column in ("image", "mask", "path", "filepath"):
                folders.update(os.path.dirname(os.path.join(str(root), p)) for p in df[column].unique() if p)
        if not folders:
            return None
        return _resolved(os.path.commonpath([str(_resolved(f)) for f in folders]))
    except Exception:
        return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_path(
    out: str | Path,
    *,
    sources: Any = (),
    overwrite: bool | None = None,
    kind: str = "folder",
    option: str = "-o",
    what: str = "output folder",
    marker: str | None = None,
    run: str | Path | None = None,
    may_be_run: bool = False,
) -> Path:
    """Stop with one line before any work when ``out`` cannot be written safely; return it resolved.

    Args:
        out: the output path the user gave.
        sources: the command's inputs (paths or Manifests); ``out`` may not be one, contain one, or lie
            inside a folder source (the next scan of that folder would read medlens's outputs as data).
        overwrite: None when the output may exist and is added to (audit, evaluate, predict); False: it must
            not exist yet; True: an existing folder is replaced, which is allowed only for a folder medlens
            wrote (:func:`is_medlens_output`) or an empty one.
        kind: "folder" or "file" (a file output may not be an existing folder).
        option: how the user named the output, for the message ("-o", "OUTPUT", "--fix").
        what: what the output is, for the message.
        marker: the kind of output medlens adds to (``overwrite=None``): for a folder its ``.medlens-run``
            kind ("evaluation", "predictions", "explanations", "audit", "worklist"): an existing folder must
            be empty or hold that kind; for a file a kind of
            :data:`~medlens.utils.output_kinds.FILE_KINDS`: an existing file is replaced only when it is one.
            Either way the output may not lie inside another folder medlens wrote (a run, an audit, ...).
        run: the run the command works for: folders inside it are its own (default outputs live there).
        may_be_run: the output may be ``run`` itself (evaluate writes into its run by default).

    Raises:
        MedlensError: an output that is a file where a folder is needed (or the reverse), whose parent is a
            file, that is or contains a source or lies inside a folder source, that exists without
            ``--overwrite``, or that ``--overwrite`` would replace although medlens did not write it.
    """

    out = Path(out)
    label = f"{option} {out}"
    if kind == "folder" and out.exists() and not out.is_dir():
        raise MedlensError(f"{label} is a file, not a folder; give a folder path for the {what}")
    if kind == "file" and out.is_dir():
        raise MedlensError(
            f"{label} is a folder; give a file path for the {what}, e.g. {out / 'manifest.csv'}"
            if what == "manifest CSV"
            else f"{label} is a folder; give a file path for the {what}"
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MedlensError(f"{label}: {parent} is a file, not a folder; choose another {option}")
            break
    target = _resolved(out)
    for src, is_folder in (
        p for s in (sources if isinstance(sources, (list, tuple)) else [sources]) for p in _source_paths(s)
    ):
        if target == src:
            raise MedlensError(
                f"{label} is the source {src}; writing there would destroy the input. Choose another {option}"
            )
        if kind == "folder" and src in target.parents and is_folder:
            raise MedlensError(
                f"{label} lies inside the source folder {src}; the next scan of that folder "
                f"would read medlens's outputs as data. Choose an {option} outside it"
            )
        if kind == "folder" and target in src.parents:
            raise MedlensError(
                f"{label} contains the source {src}; writing there would destroy the input. "
                f"Choose another {option}"
            )
    if marker is not None and (overwrite is None or not out.exists() or is_medlens_output(out)):
        _check_kind(out, target, marker, kind, run, may_be_run, option, what)
    if overwrite is None or not out.exists():
        return target
    if not overwrite:
        raise MedlensError(f"{what} {out} already exists; choose another {option} or pass --overwrite")
    if not (is_medlens_output(out) or _is_empty_dir(out)):
        raise MedlensError(
            f"{out} exists and was not written by medlens; refusing to replace it — choose "
            f"another {option} or remove it yourself"
        )
    return target


#: Folders whose files other commands read (a run's manifest, a convert output's volumes): never written into.
_KEPT = {"run", "volumes", "curve", "search"}


def _check_kind(
    out: Path, target: Path, marker: str, kind: str, run: Any, may_be_run: bool, option: str, what: str
) -> None:
    """The rules of an output medlens adds to (see :func:`check_output_path`, ``marker``)."""
    own = _resolved(run) if run is not None else None
    label = f"{option} {out}"
    inside_own = own is not None and (target == own or own in target.parents)
    for parent in [] if inside_own else target.parents:  # another run (or audit...) keeps its own files
        if not is_medlens_output(parent):
            continue
        # no folder inside another run or convert output; no existing file replaced in a folder others read
        found = _folder_kind(parent)
        if (kind == "folder" and found in ("run", "volumes")) or (out.is_file() and found in _KEPT):
            raise MedlensError(
                f"{label} lies inside {parent}, {_a(_kind_name(parent))} medlens wrote for something else; "
                f"choose an {option} outside it"
            )
    if kind == "file":
        if out.is_file() and not is_file_of_kind(out, marker):
            raise MedlensError(
                f"{label} exists and is not a {FILE_KINDS[marker][1]} medlens wrote; refusing to replace "
                f"it — choose another {option} or remove it yourself"
            )
        return
    if not out.is_dir() or _is_empty_dir(out):
        return
    if own is not None and target == own:
        if may_be_run:
            return
        raise MedlensError(f"{label} is the run folder itself; give a new folder for the {what}")
    found = _folder_kind(out)
    if found == marker:
        return
    if found is not None:
        raise MedlensError(
            f"{label} is {_a(FOLDER_KINDS.get(found, found))} medlens wrote for something else; writing the "
            f"{what} there would mix with or replace its files. Choose a new or empty folder for {option}"
        )
    if inside_own:  # a folder of the command's own run
        return
    raise MedlensError(
        f"{label} exists and is not {_a(what)} medlens wrote; medlens writes only into a new or empty folder "
        f"or one it made for this. Choose another {option}"
    )


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def data_folder(manifest: Any) -> Path | None:
    """The folder a manifest's images live in, at most three levels below it (class, split/class, patient
    folders): no output may lie there. None for images scattered across the disk (their root could be /)."""
    folder = _common_folder(manifest.df, Path(str(manifest.root)))
    if folder is None:
        return None
    dirs = {os.path.dirname(p.split("::")[0]) for p in manifest.paths()}  # the image's folder: one level
    deepest = max((len(Path(os.path.relpath(_resolved(d), folder)).parts) for d in dirs), default=0)
    return folder if deepest <= 2 else None


def _folder_kind(folder: Path) -> str | None:
    found = read_marker(folder)
    if found is not None:
        return str(found["kind"])
    legacy = legacy_folder_kind(folder)
    return legacy or ("run" if is_medlens_output(folder) else None)


def _kind_name(folder: Path) -> str:
    found = _folder_kind(folder) or "run"
    return FOLDER_KINDS.get(found, f"{found} folder")


def mark_output(folder: str | Path, kind: str) -> None:
    """Give a folder medlens adds to its marker (once; a run's own marker is never replaced)."""
    folder = Path(folder)
    if folder.is_dir() and not is_medlens_output(folder):
        write_marker(folder, kind)
