"""`medlens triage RUN INPUTS... -o DIR`: the day's studies ranked by risk and history, every one of them.

The path: expand the inputs into studies (:mod:`medlens.explaining.inputs`) → explain each with the run's
model (calibrated probabilities, OOD flag, ``<stem>_explain.png``) → attach what is known of the patient (the
history CSV, else the DICOM header) → score with the task's ``triage_score`` hook and the config's weights →
``worklist.csv`` / ``.json`` / ``.html``, keeping the read/unread state already in the folder. With
``evaluate`` the ranked list is replayed as a day of reading against first-in-first-out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from medlens.data.run_data import run_data_folder
from medlens.errors import MedlensError
from medlens.explaining.inputs import Study, expand_inputs
from medlens.explaining.run import explain_studies
from medlens.io.guard import accepts_image_limit
from medlens.io.images import is_dicom_file
from medlens.models.checkpoint import load_model
from medlens.tasks.registry import get_task
from medlens.triaging.config import TriageConfig
from medlens.triaging.history import check_prior_dates, load_history
from medlens.triaging.simulate import simulate_day
from medlens.triaging.state import check_run, run_identity
from medlens.triaging.worklist import build_worklist, load_state, write_worklist
from medlens.utils.files import check_output_path, mark_output, write_json

SCHEMA = "medlens.triage/1"
#: DICOM header fields a worklist uses (patient, study time, age and sex when no history CSV has them).
DICOM_FIELDS = ("PatientID", "PatientAge", "PatientSex", "StudyDate", "StudyTime", "StudyInstanceUID")
_NEGATIVE_MASK = {"", "none", "nan"}


@accepts_image_limit
def triage(
    run_dir: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    *,
    history: str | Path | None = None,
    config: str | Path | TriageConfig | None = None,
    urgent: list[str] | None = None,
    split: str | None = None,
    now: datetime | str | None = None,
    explain: bool = True,
    evaluate: bool = False,
    read_every: float = 5.0,
    arrive_every: float = 0.0,
    n_bootstrap: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Rank ``inputs`` into a worklist in ``out`` and return it.

    Args:
        run_dir: a run directory from ``medlens train`` (calibrated with ``medlens calibrate`` for calibrated
            risks).
        inputs: image files, folders (searched recursively), DICOM files or series folders, NIfTI volumes, or
            a manifest CSV whose columns (patient_id, study_time, referral_priority, ...) are study metadata.
        out: the worklist folder (its read/unread state is kept across runs).
        history: a CSV with one row per patient (patient_id, age, sex, prior_positive, referral_priority,
            free columns).
        config: a triage YAML file or a :class:`TriageConfig` (default weights otherwise).
        urgent: classification: the urgent classes (weight 1 each), replacing the config's.
        split: with a manifest input, keep only the rows of this split (e.g. ``val`` for a simulated day).
        now: the time waits are measured to (default: now).
        explain: draw ``<stem>_explain.png`` per study (linked from the worklist).
        evaluate: simulate the day against first-in-first-out using the manifest's ground truth (label for
            classification, mask for segmentation and detection).
        read_every: minutes one read takes in the simulation.
        arrive_every: minutes between arrivals in the simulation (0: all there at the start).
        n_bootstrap: resamples for the simulation's intervals.
        progress: show progress while the run's embedding index is built.

    Returns:
        ``{"schema", "run", "task", "config", "n", "n_unreadable", "files", "rows", "evaluation",
        "warnings"}`` where each row has ``rank``, ``priority``, ``input``, ``contrib_<factor>``, ``reason``,
        ``explain_png``, and ``warnings`` lists what was not used (a history date in the future, ...).

    Raises:
        MedlensError: a bad run, input, history or config; ``out`` holding another run's worklist; a
            history whose every prior_positive date is in the future.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedlensError(
            f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`"
        )
    cfg = config if isinstance(config, TriageConfig) else TriageConfig.load(config)
    loaded = load_model(run_dir)
    task = get_task(loaded.spec.task)
    if urgent:
        cfg.urgent_classes = dict.fromkeys(urgent, 1.0)
        cfg.validate("--urgent")
    _check_urgent(cfg, loaded, task.name)
    when = _parse_now(now)
    warnings: list[str] = []
    hist = load_history(history, levels=cfg.referral_levels) if history is not None else None
    if hist is not None:
        warnings += check_prior_dates(hist, when or datetime.now(), history)
    studies = _select_split(expand_inputs(list(inputs), loaded.spec.spatial_dims), split)
    out = Path(out)
    sources = [*inputs, *filter(None, [run_data_folder(run_dir)])]  # never among the run's training images
    check_output_path(out, sources=sources, what="worklist folder", marker="worklist", run=run_dir)
    run_id = run_identity(run_dir, task.name)
    check_run(out, run_id)  # before anything is written into the folder
    explained = explain_studies(
        loaded, run_dir, studies, out / "explanations", write_png=explain, progress=progress
    )
    records = [_record(study, case) for study, case in zip(studies, explained["cases"], strict=True)]
    rows = build_worklist(
        records,
        cfg,
        lambda record, c: task.triage_score(dict(record), c.urgent_classes),
        history=hist,
        now=when,
        state=load_state(out),
    )
    files = write_worklist(rows, out, cfg, run=run_id)
    mark_output(out, "worklist")
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "run": str(run_dir),
        "task": task.name,
        "calibrated": explained["calibrated"],
        "config": cfg.to_dict(),
        "n": len(rows),
        "n_unreadable": sum(bool(r["unreadable"]) for r in rows),
        "files": {k: str(v) for k, v in files.items()},
        "rows": rows,
        "evaluation": None,
        "warnings": warnings,
    }
    if evaluate:
        truth = _truth(studies, records, cfg, loaded, task.name)
        by_arrival = sorted(rows, key=lambda r: r["input_index"])
        result["evaluation"] = {
            "urgent": _urgent_text(cfg, loaded, task.name),
            **simulate_day(
                by_arrival,
                read_every_minutes=read_every,
                arrive_every_minutes=arrive_every,
                urgent=[truth[r["input_index"]] for r in by_arrival],
                n_bootstrap=n_bootstrap,
            ),
        }
        write_json(out / "evaluation.json", result["evaluation"])
        result["files"]["evaluation"] = str(out / "evaluation.json")
    return result


# ---------------------------------------------------------------------------------------------------------


def _record(study: Study, case: Mapping[str, Any]) -> dict[str, Any]:
    """The worklist's record of one study: its explanation, its metadata, and its DICOM header fields."""
    record = {**study.meta, **case, "input": study.input}
    record["study"] = str(
        study.meta.get("study_id") or study.meta.get("case_id") or study.meta.get("accession") or study.input
    )
    if case.get("png"):
        record["explain_png"] = f"explanations/{case['png']}"
    header = dicom_header(study.path)
    if header:
        record["dicom"] = header
        if record.get("patient_id") is None:  # the manifest's patient wins over the header's
            record["patient_id"] = header.get("PatientID")
        if header.get("StudyInstanceUID") and record["study"] == study.input:
            record["study"] = header["StudyInstanceUID"]
    return record


def dicom_header(path: str | Path) -> dict[str, str] | None:
    """The worklist's DICOM fields of a DICOM file or series folder (its first file), None for other inputs
    or an unreadable header (the image read reports that)."""
    import pydicom  # deferred: only DICOM inputs need it

    p = Path(path)
    if p.is_dir():
        p = next((f for f in sorted(p.iterdir()) if f.is_file() and is_dicom_file(f)), None)
        if p is None:
            return None
    elif not (p.is_file() and is_dicom_file(p)):
        return None
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
    except Exception:
        return None
    fields = {name: ds.get(name) for name in DICOM_FIELDS}
    return {k: str(v).strip() for k, v in fields.items() if v not in (None, "")}


def _select_split(studies: list[Study], split: str | None) -> list[Study]:
    if split is None:
        return studies
    kept = [s for s in studies if str(s.meta.get("split") or "") == split]
    if not kept:
        found = sorted({str(s.meta.get("split")) for s in studies if s.meta.get("split")})
        raise MedlensError(
            f"--split {split}: no input row is in split {split!r} "
            f"({'splits found: ' + ', '.join(found) if found else 'the inputs have no split column'}); "
            "give a manifest with a split column, or leave --split out"
        )
    return kept


def _check_urgent(cfg: TriageConfig, loaded, task_name: str) -> None:
    if cfg.urgent_classes is None:
        return
    if task_name != "classification":
        raise MedlensError(
            f"urgent classes apply to classification runs; this is a {task_name} run, whose finding is the "
            "lesion (segmentation) or box (detection): leave urgent_classes / --urgent out"
        )
    unknown = sorted(set(cfg.urgent_classes) - set(loaded.spec.class_names))
    if unknown:
        raise MedlensError(
            f"urgent class(es) {', '.join(unknown)} are not classes of this model; classes: "
            f"{', '.join(loaded.spec.class_names)}"
        )


def _urgent_classes(cfg: TriageConfig, loaded) -> list[str]:
    from medlens.tasks.classification import default_urgent  # deferred: torch-heavy module

    chosen = cfg.urgent_classes or default_urgent(list(loaded.spec.class_names))
    return [c for c, w in chosen.items() if w > 0]


def _urgent_text(cfg: TriageConfig, loaded, task_name: str) -> str:
    if task_name == "classification":
        return "label in " + ", ".join(_urgent_classes(cfg, loaded))
    return "a lesion in the ground-truth mask"


def _truth(
    studies: list[Study], records: list[dict], cfg: TriageConfig, loaded, task_name: str
) -> list[bool]:
    """Ground truth of urgency per study, from the manifest's label (classification) or mask."""
    if task_name == "classification":
        urgent = set(_urgent_classes(cfg, loaded))
        labels = [s.meta.get("label") for s in studies]
        if any(lab is None for lab in labels):
            missing = next(s.input for s, lab in zip(studies, labels) if lab is None)
            raise MedlensError(
                f"--evaluate needs the true label of every study; {missing} has none. Give a manifest CSV "
                "with a label column (medlens ingest writes one)"
            )
        return [str(lab) in urgent for lab in labels]
    return [_mask_positive(s) for s in studies]


def _mask_positive(study: Study) -> bool:
    from medlens.io.images import read_image  # deferred: only the evaluation reads masks
    from medlens.io.volumes import is_nifti_file, read_volume

    mask = study.meta.get("mask")
    if mask is None or str(mask).strip().lower() in _NEGATIVE_MASK:
        raise MedlensError(
            f"--evaluate needs the true mask of every study; {study.input} has none. Give a manifest CSV "
            "with a mask column (medlens ingest writes one for a segmentation source)"
        )
    path = Path(str(mask))
    arr = read_volume(path)[0] if is_nifti_file(path) else read_image(path)
    return bool((arr > 0).any())


def _parse_now(now: datetime | str | None) -> datetime | None:
    if now is None or isinstance(now, datetime):
        return now
    try:
        return datetime.fromisoformat(str(now))
    except ValueError as err:
        raise MedlensError(f"--now must be an ISO 8601 time like 2026-12-03T09:00, got {now!r}") from err
