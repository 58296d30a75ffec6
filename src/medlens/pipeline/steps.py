"""`medlens train` as a user runs it: audit-fix (when asked) → train → evaluate → report, in one run folder.

The training step (:func:`medlens.training.fit.train`) owns the run directory (``<run>.partial`` renamed when
complete); this module hands it the audit's fixer and the evaluation that completes the run, so that neither
training nor evaluation imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medlens.auditing.fix import fix_manifest
from medlens.data.manifest import Manifest
from medlens.evaluation.evaluate import evaluate
from medlens.training import fit
from medlens.training.config import TrainConfig


def train(
    source: Manifest | str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> Path:
    """Train a model for ``config.task`` on ``source``; write a complete, evaluated run directory.

    Args:
        source: a Manifest, a manifest CSV, class folders, an npz file, image/mask pairs, NIfTI volumes, a
            boxes CSV ... (anything ``ingest`` reads that fits the task).
        out_dir: the run directory to create.
        config: a TrainConfig; ``overrides`` (non-None keyword arguments) replace its fields.
        overwrite: replace an existing run directory (only one medlens wrote, never the source).
        resume: continue an interrupted run from ``<out_dir>.partial/checkpoints/last.ckpt``.
        progress: show progress bars.

    Returns:
        The run directory (model.pt, config.yaml, manifest.csv, history.csv, train.json, summary.json,
        predictions.csv, figures/, report.html).
    """
    return fit.train(
        source,
        out_dir,
        config,
        overwrite=overwrite,
        resume=resume,
        progress=progress,
        fix=audit_fix,
        finish=evaluate_run,
        **overrides,
    )


def audit_fix(manifest: Manifest, progress: bool) -> tuple[Manifest, list[dict]]:
    """The audit's fixer on a manifest whose validation split is carved (leaked groups move to one split)."""
    fixed, changes, _ = fix_manifest(manifest, progress=progress)
    return fixed, changes


def evaluate_run(run_dir: Path, data: Any, run_name: str, progress: bool, split: str | None = None) -> None:
    """Evaluate a just-trained run on its own held-out split (default: test if it has one, else val),
    reusing the decoded data; write the report."""
    evaluate(run_dir, out=run_dir, progress=progress, run_name=run_name, prepared=data, split=split)
