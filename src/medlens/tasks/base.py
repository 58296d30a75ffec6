"""The Task: one object per task owning its whole path, from data to report, through named hooks.

The shared code calls hooks and never branches on a task's name (a task is one file + ``@register_task``,
see :mod:`medlens.tasks.registry`):

- data: ``resolve`` (source → Manifest), ``prepare`` (training data + preprocessing spec), ``check_config``,
  ``check_evaluation_manifest``;
- model: ``model_options``, ``num_outputs``, ``summary_model`` (what ``medlens summary`` counts);
- the loop (:class:`medlens.training.module.LitModel`): ``make_loop_task`` (the configured hooks object), then
  ``prepare_batch``, ``training_loss``, ``validation_outputs``, ``validation_metrics``; ``monitor`` names the
  validation metric early stopping follows, ``val_batch`` the validation batch size;
- evaluation: ``evaluate(loaded, sub, ctx) -> Evaluation``, or ``evaluator``: the name of an evaluator
  registered in :mod:`medlens.evaluation.evaluators` (the built-in tasks score with the bootstrap, calibration
  and plotting library of :mod:`medlens.evaluation`, a layer above this one, so their evaluate hook lives
  there, named by the task); ``report_section`` (the task's block of report.html);
- inference: ``write_predictions`` (per file: ``write_prediction``), ``prediction_columns`` and
  ``prediction_row`` (the ``medlens predict`` table);
- explanation: ``explain(loaded, studies, ctx) -> records``, or ``explainer``: the name of an explainer
  registered in :mod:`medlens.explaining.explainers` (Grad-CAM and the embedding index sit above this
  layer, so the built-in tasks name theirs);
- triage: ``triage_score(record, urgent) -> (score in [0, 1], detail)``, the finding factor of the worklist.

The loop's defaults are single-label classification with batches ``(images, labels)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from medlens.data.augment import augment_batch
from medlens.data.manifest import Manifest
from medlens.data.prepared import resolve_source
from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.io.failures import row_error


def normalize(x: torch.Tensor, spec: PreprocessingSpec) -> torch.Tensor:
    """uint8 batch (N, C, H, W) → float, scaled to [0, 1], then standardised: with the spec's mean/std, or
    (``spec.intensity == "image"``) each image's channels over their own non-zero pixels."""
    if spec.intensity == "image":
        return standardize_nonzero(x.float() / 255.0, first_spatial_dim=2)
    mean = torch.tensor(spec.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std


def standardize_nonzero(x: torch.Tensor, first_spatial_dim: int = 1) -> torch.Tensor:
    """Standardise every channel over its non-zero voxels (dims from ``first_spatial_dim`` on); zeros stay 0.

    MRI scanners and exports differ in intensity scale from patient to patient (LGG: some patients' FLAIR
    tumour is as dark as others' normal brain), which one dataset-wide mean/std cannot undo. This is the rule
    of MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)`` and nnU-Net's for MRI, written as one
    vectorised pass: MONAI's per-channel boolean indexing took ~10x longer.
    """
    inside = x != 0
    dims = tuple(range(first_spatial_dim, x.dim()))
    count = inside.sum(dims, keepdim=True).clamp(min=1)
    mean = (x * inside).sum(dims, keepdim=True) / count
    std = ((((x - mean) * inside) ** 2).sum(dims, keepdim=True) / count).sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel is only centred
    return torch.where(inside, (x - mean) / std, torch.zeros_like(x)).contiguous()


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """channels_last is ~1.4x faster for 2D convolutions on CPU; 3D batches stay as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@dataclass
class EvalContext:
    """What ``medlens evaluate`` hands a task's evaluate hook besides the model and the cases."""

    run: str  # the run's name in the summary
    data: str  # the evaluated source
    split: str  # "test", "val", ... or "all"
    n_bootstrap: int
    run_dir: Path
    out: Path  # the output folder; figures go under out / "figures"
    prepared: Any = None  # the data training just cached (the run's own manifest only)
    gate: Any = None  # a loaded Gate (2D segmentation) or None
    progress: bool = True
    clinical: Any = None  # medlens.evaluation.clinical.ClinicalOptions (operating points, cohorts, readers)


@dataclass
class Evaluation:
    """A task's evaluation, written by the one writer (:func:`medlens.evaluation.writer.write_evaluation`).

    Attributes:
        cases: summary.json ``cases`` (one dict per case, ``case_id`` and ``patient_id`` first).
        result: the metrics block: ``{"metrics": {name: {"value", "ci95", ...}}}`` plus any other top-level
            summary keys the computation produced (``per_class``, ``bootstrap``, ``confusion_matrix`` ...).
        predictions: the rows of predictions.csv.
        extra: more top-level summary keys (those already in ``result`` are left out).
        figures: title → PNG path, drawn under ``ctx.out / "figures"`` (the writer adds the training history).
        skipped: unreadable cases ``{"path", "reason", ...}``.
        data_summary: class counts per split for the report (classification), or None.
        after: summary keys set after the standard ones (kept last in summary.json).
    """

    cases: list[dict[str, Any]]
    result: dict[str, Any]
    predictions: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    data_summary: dict[str, dict[str, int]] | None = None
    after: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base of every task: the whole path's hooks; classification-shaped defaults for the loop's hooks."""

    name = "task"
    #: The model ``medlens train --task NAME`` uses when no ``--model`` is given.
    default_model = "cnn-small"
    #: The validation metric early stopping and the best checkpoint follow (``monitor`` left at default).
    monitor = "val_accuracy"
    #: Validation batch size (at least the training batch size).
    val_batch = 128
    #: TrainConfig fields passed to the model factory (``model_args`` are added to them).
    model_option_keys: tuple[str, ...] = ("dropout", "weights", "pretrained")
    #: Whether a source must have a target per case (``ingest(require_labels=...)``).
    needs_labels = False
    #: Name of an evaluator registered in medlens.evaluation.evaluators, or None: the ``evaluate`` hook.
    evaluator: str | None = None
    #: Name of an explainer registered in medlens.explaining.explainers, or None: the ``explain`` hook.
    explainer: str | None = None
    #: Column titles of the ``medlens predict`` table (after "file").
    prediction_columns: tuple[str, ...] = ("prediction",)

    # -- data ------------------------------------------------------------------------------------------
    def resolve(self, source) -> Manifest:
        """A Manifest as given, or ingest a path (targets required when ``needs_labels``)."""
        return resolve_source(source, require_labels=self.needs_labels)

    def check_config(self, cfg) -> None:
        """Refuse TrainConfig options that do not apply to this task."""
        if cfg.boxes_from_masks:
            raise MedlensError("--boxes-from-masks only applies to --task detection")

    def prepare(
        self, source, cfg, info, progress: bool, fix=None
    ) -> tuple[Any, PreprocessingSpec, list[dict]]:
        """Training data: ``(data, spec, audit changes)``; ``data`` has ``manifest``, ``indices(split)``,
        ``loader(split, batch_size, shuffle=, seed=)`` and ``skipped`` (see
        :class:`medlens.data.prepared.PreparedData`); ``fix(manifest, progress)`` is the audit's fixer."""
        raise NotImplementedError(f"task {self.name!r} does not define prepare()")

    def check_evaluation_manifest(self, manifest: Manifest) -> None:
        """Refuse a source without the targets evaluation compares with."""

    # -- model -----------------------------------------------------------------------------------------
    def accepts_model(self, info) -> bool:
        """Whether a registry model (its :class:`~medlens.models.registry.ModelInfo`) serves this task."""
        return info.task == self.name

    def model_options(self, cfg) -> dict[str, Any]:
        """Keyword arguments of the model factory from the config (``None`` values left out)."""
        opts = {k: getattr(cfg, k) for k in self.model_option_keys}
        opts.update(cfg.model_args or {})
        return {k: v for k, v in opts.items() if v is not None}

    def num_outputs(self, spec: PreprocessingSpec) -> int:
        """Output width of the network."""
        return spec.num_outputs

    def summary_model(self, num_classes: int, head: str, freeze_backbone: bool) -> tuple[int, dict[str, Any]]:
        """``(outputs, options)`` of the network ``medlens summary`` counts."""
        return num_classes, {}

    # -- the loop --------------------------------------------------------------------------------------
    def make_loop_task(self, cfg, data, spec: PreprocessingSpec) -> Task:
        """The object whose loop hooks the Lightning module calls (default: this task itself)."""
        return self

    # -- evaluation ------------------------------------------------------------------------------------
    def evaluate(self, loaded, sub: Manifest, ctx: EvalContext) -> Evaluation:
        """Predict and score every case of ``sub`` (used when ``evaluator`` is None)."""
        raise NotImplementedError(f"task {self.name!r} defines neither evaluate() nor an evaluator")

    def report_section(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        """The task's block of report.html: ``{"rule", "table": {"title", "columns", "rows"}, "facts"}``."""
        return None

    # -- inference -------------------------------------------------------------------------------------
    def write_predictions(
        self, loaded, files: list, out: Path, *, gate=None, negative_class=None, gate_threshold: float = 0.5
    ) -> list[dict[str, Any]]:
        """Predict each file (``write_prediction``); an unreadable one yields ``{"path", "error"}``."""
        if gate is not None:
            raise MedlensError(f"--gate passes positives to a segmentation run, not to a {self.name} run")
        results = []
        for f in files:
            try:
                results.append({"path": str(f), **self.write_prediction(loaded, Path(f), out)})
            except MedlensError as err:  # this file only (unreadable, or not what the model reads)
                results.append({"path": str(f), "error": row_error(err)})
        return results

    def write_prediction(self, loaded, path: Path, out: Path) -> dict[str, Any]:
        """The record of one file (files written under ``out`` where the task writes any)."""
        raise NotImplementedError(f"task {self.name!r} does not define write_prediction()")

    def prediction_row(self, record: dict[str, Any]) -> list[str]:
        """One row of the ``medlens predict`` table (after the file), for ``prediction_columns``."""
        return [str(record.get(c, "")) for c in self.prediction_columns]

    # -- explanation and triage ------------------------------------------------------------------------
    def explain(self, loaded, studies: list, ctx) -> list[dict[str, Any]]:
        """One explanation record per study (used when ``explainer`` is None)."""
        raise NotImplementedError(f"task {self.name!r} defines neither explain() nor an explainer")

    def triage_score(self, record: dict[str, Any], urgent: dict[str, float] | None) -> tuple[float, str]:
        """The finding factor of the worklist for one explanation record: a score in [0, 1] and a short
        detail for the reason line (``urgent``: class name -> weight, classification only)."""
        raise NotImplementedError(f"task {self.name!r} does not define triage_score()")

    # -- loop hooks (defaults: single-label classification) -------------------------------------------

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def epoch_metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def prepare_batch(self, batch, spec: PreprocessingSpec, augment=None, gen: torch.Generator | None = None):
        """Normalise (and, while training, augment) a batch ``(images, targets)``."""
        x, y = batch
        x = normalize(x, spec)
        if augment is not None:
            x = augment_batch(x, augment, gen)
        return channels_last(x), y

    def training_loss(self, model: torch.nn.Module, batch) -> tuple[torch.Tensor, int]:
        """Loss of one prepared batch and its size (for epoch averaging)."""
        x, y = batch
        return self.loss(model(x), y), len(y)

    def validation_outputs(self, model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
        """Per-case tensors of one prepared validation batch."""
        x, y = batch
        return {"output": model(x).detach(), "target": y}

    def validation_metrics(self, outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        """Epoch metrics from the concatenated validation outputs."""
        return self.epoch_metrics(outputs["output"], outputs["target"])
