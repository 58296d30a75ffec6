"""`medlens evaluate`: run a trained model on a split or a whole source and write summary.json + report.

summary.json is the single source of truth: report.html, `compare`, the UI and the benchmarks read it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from medlens.data.manifest import Manifest, grouped_patients
from medlens.errors import MedlensError
from medlens.io.guard import accepts_image_limit
from medlens.utils.files import atomic_write_text, write_json


@accepts_image_limit
def evaluate(
    run_dir: str | Path,
    data: Manifest | str | Path | None = None,
    *,
    split: str | None = None,
    out: str | Path | None = None,
    n_bootstrap: int = 1000,
    progress: bool = True,
    run_name: str | None = None,
    prepared=None,
    gate=None,
) -> dict[str, Any]:
    """Evaluate the run's model and write summary.json, predictions.csv, figures and report.html.

    The run's task decides what is measured: classification (accuracy, F1, AUC, calibration), segmentation
    (:mod:`medlens.evaluation.seg_evaluate`) or detection (:mod:`medlens.evaluation.det_evaluate`).

    Args:
        run_dir: a run directory written by ``medlens train``.
        data: another labelled source to evaluate on (default: the run's own manifest).
        split: which split to evaluate; default "test" if the data has one, else "val" for the run's own
            manifest, else all of ``data``.
        out: output folder (default: the run directory, or ``RUN_DIR/eval-<data>-<split>`` with ``data``).
        n_bootstrap: bootstrap resamples for the 95 % confidence intervals.
        progress: show progress bars.
        run_name: the run's name in the summary (default: ``run_dir``).
        prepared: the data training just cached (reused instead of decoding again).
        gate: for a 2D segmentation run, a classification run directory (or a loaded
            :class:`~medlens.tasks.gate.Gate`): slices it calls negative get an empty mask, and the summary
            gains a ``pipeline`` section with false-positive slice counts.

    Returns:
        The summary dict (also written as summary.json).
    """
    from medlens.data.prepared import prepare, resolve_source
    from medlens.models.checkpoint import load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MedlensError(
            f"run directory {run_dir} not found; train one with `medlens train SRC -o {run_dir}`"
        )
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise MedlensError(f"-o {out} is a file, not a folder; give a folder path for the evaluation outputs")
    loaded = load_model(run_dir)
    if loaded.spec.task != "classification":
        return _evaluate_localisation(
            loaded,
            run_dir,
            data,
            split=split,
            out=out,
            n_bootstrap=n_bootstrap,
            progress=progress,
            run_name=run_name,
            prepared=prepared,
            gate=gate,
        )
    if gate is not None:
        raise MedlensError(f"--gate applies to segmentation runs; {run_dir} is a classification run")
    classes = list(loaded.spec.class_names)
    own = data is None
    manifest = (
        Manifest.load(run_dir / "manifest.csv")
        if own and prepared is None
        else (prepared.manifest if own else resolve_source(data))
    )
    split = split or ("test" if "test" in manifest.splits else "val" if own else None)
    if split is not None and split not in manifest.splits:
        raise MedlensError(
            f"split {split!r} not found in {manifest.source or manifest.root}; "
            f"it has {manifest.splits or ['no split column']}"
        )
    if not manifest.has_labels:
        raise MedlensError(f"{manifest.source or manifest.root} has no labels; use `medlens predict` instead")
    if (
        prepared is not None
        and own
        and (prepared.images.shape[1], prepared.images.shape[2])
        == (loaded.spec.channels, loaded.spec.image_size)
    ):
        idx = prepared.indices(split)
        sub = prepared.manifest.with_df(prepared.manifest.df.iloc[idx])
        images, targets, skipped = prepared.images[idx], prepared.targets[idx], prepared.skipped
    else:
        subset = manifest.subset(split) if split else manifest
        p = prepare(subset, classes, loaded.spec.image_size, loaded.spec.channels, progress=progress)
        sub, images, targets, skipped = p.manifest, p.images, p.targets, p.skipped
    out = Path(out) if out else (run_dir if own else run_dir / f"eval-{_slug(manifest)}-{split or 'all'}")
    return _write_outputs(
        loaded,
        sub,
        images,
        targets,
        skipped,
        out,
        run=run_name or str(run_dir),
        data=str(manifest.source or manifest.root),
        split=split or "all",
        n_bootstrap=n_bootstrap,
        run_dir=run_dir,
    )


def _evaluate_localisation(
    loaded, run_dir: Path, data, *, split, out, n_bootstrap, progress, run_name, prepared, gate
) -> dict[str, Any]:
    """Segmentation and detection: pick the cases like classification does, then the task's evaluator."""
    from medlens.data.prepared import resolve_source

    task = loaded.spec.task
    own = data is None
    if own:
        manifest = prepared.manifest if prepared is not None else Manifest.load(run_dir / "manifest.csv")
    else:
        manifest = resolve_source(data, task)
    split = split or ("test" if "test" in manifest.splits else "val" if own else None)
    if split is not None and split not in manifest.splits:
        raise MedlensError(
            f"split {split!r} not found in {manifest.source or manifest.root}; "
            f"it has {manifest.splits or ['no split column']}"
        )
    if task == "segmentation" and "mask" not in manifest.df.columns:
        raise MedlensError(
            f"{manifest.source or manifest.root} has no masks to compare with; use `medlens predict`"
        )
    sub = manifest.subset(split) if split else manifest
    out = Path(out) if out else (run_dir if own else run_dir / f"eval-{_slug(manifest)}-{split or 'all'}")
    kwargs = dict(
        run=run_name or str(run_dir),
        data=str(manifest.source or manifest.root),
        split=split or "all",
        n_bootstrap=n_bootstrap,
        run_dir=run_dir,
        prepared=prepared if own else None,
        progress=progress,
    )
    if task == "detection":
        if gate is not None:
            raise MedlensError("--gate applies to segmentation runs, not detection")
        from medlens.evaluation.det_evaluate import evaluate_detection

        return evaluate_detection(loaded, sub, out, **kwargs)
    from medlens.evaluation.seg_evaluate import evaluate_segmentation

    if gate is not None and not hasattr(gate, "positive_probability"):
        from medlens.tasks.gate import load_gate

        gate = load_gate(gate)
    return evaluate_segmentation(loaded, sub, out, gate=gate, **kwargs)


def _write_outputs(
    loaded,
    sub: Manifest,
    images,
    targets,
    skipped,
    out: Path,
    *,
    run: str,
    data: str,
    split: str,
    n_bootstrap: int,
    run_dir: Path,
) -> dict[str, Any]:
    from medlens.evaluation import plots
    from medlens.evaluation.metrics import (
        build_summary,
        calibration,
        cases_from_arrays,
        classification_metrics,
    )
    from medlens.evaluation.report import render_report
    from medlens.tasks.classification import predict_probs

    classes = list(loaded.spec.class_names)
    probs = predict_probs(loaded, images)
    df = sub.df
    result = classification_metrics(
        targets, probs, classes, n_bootstrap=n_bootstrap, seed=0, groups=grouped_patients(df["patient_id"])
    )
    cases = cases_from_arrays(df["case_id"].tolist(), df["patient_id"].tolist(), targets, probs, classes)
    calib = result.get("calibration") or calibration(targets, probs)
    extra = {
        "model": {"name": loaded.name, "options": loaded.options},
        "skipped": skipped,
        "calibration": calib,
        "class_names": classes,
        "audit_fix": _audit_fix(run_dir),
    }
    summary = build_summary(
        task="classification",
        run=run,
        data=data,
        split=split,
        n_cases=len(targets),
        metrics_result=result,
        cases=cases,
        extra={k: v for k, v in extra.items() if k not in result},
    )
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    _write_predictions(out / "predictions.csv", df, targets, probs, classes)
    fig = out / "figures"
    figures = {
        "Confusion matrix": plots.plot_confusion_matrix(
            result["confusion_matrix"], classes, fig / "confusion_matrix.png"
        ),
        "ROC": plots.plot_roc(targets, probs, classes, fig / "roc.png"),
        "Reliability": plots.plot_reliability(calib, fig / "reliability.png"),
    }
    history = run_dir / "history.csv"
    if history.is_file():
        figures["Training history"] = plots.plot_history(pd.read_csv(history), fig / "history.png")
    render_report(
        summary,
        out / "report.html",
        figures=figures,
        config=_read_yaml(run_dir / "config.yaml"),
        data_summary=_data_summary(run_dir),
        skipped=skipped,
        title=f"medlens report: {Path(run).name}",
    )
    return summary


def _write_predictions(path: Path, df: pd.DataFrame, targets, probs, classes: list[str]) -> None:
    table = pd.DataFrame(
        {
            "case_id": df["case_id"],
            "patient_id": df["patient_id"],
            "image": df["image"],
            "target": [classes[t] for t in targets],
            "prediction": [classes[i] for i in probs.argmax(1)],
            "confidence": probs.max(1).round(6),
        }
    )
    for i, c in enumerate(classes):
        table[f"p_{c}"] = probs[:, i].round(6)
    atomic_write_text(path, table.to_csv(index=False))


def _read_yaml(path: Path) -> dict | None:
    import yaml

    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _data_summary(run_dir: Path) -> dict[str, dict[str, int]] | None:
    """Class counts per split of the run's training data, from train.json."""
    import json

    path = run_dir / "train.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("class_counts")


def _audit_fix(run_dir: Path) -> dict[str, Any]:
    """Whether training data was leakage-checked and cleaned by `--audit-fix`, and how many changes."""
    import json

    cfg = _read_yaml(run_dir / "config.yaml") or {}
    path = run_dir / "train.json"
    changes = json.loads(path.read_text()).get("audit_fix") or [] if path.is_file() else []
    return {"applied": bool(cfg.get("audit_fix")), "changes": len(changes)}


def _slug(manifest: Manifest) -> str:
    name = Path(str(manifest.root)).name or "data"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)[:40]
