"""The task registry: a toy regression task (each image's mean intensity), defined and registered only here,
goes through train → evaluate → predict with the public API: adding a task is one file + register."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import medlens
from medlens.data.cache import load_image
from medlens.data.prepared import prepare
from medlens.data.spec import PreprocessingSpec
from medlens.data.splits import carve_validation
from medlens.errors import MedlensError
from medlens.models.registry import register_model
from medlens.tasks.base import Evaluation, Task, normalize
from medlens.tasks.registry import get_task, list_tasks, register_task

NAME = "mean-intensity"
SIZE = 16


@register_model("toy-mean", "global average pool + linear layer (test only)", task=NAME, default_size=SIZE)
def _toy_model(*, in_channels: int, num_classes: int, **_: object) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(in_channels, num_classes)
    )


@register_task(NAME)
class MeanIntensityTask(Task):
    """Regression of each image's mean intensity in [0, 1]: no labels, MSE loss, MAE metric."""

    monitor = "val_neg_mae"  # checkpoints keep the highest score
    model_option_keys = ()
    prediction_columns = ("prediction",)

    def prepare(self, source, cfg, info, progress, fix=None):
        manifest = carve_validation(self.resolve(source), cfg.val_fraction, seed=cfg.seed)
        data = prepare(manifest, [], SIZE, 1, workers=0, progress=False)
        data = dataclasses.replace(data, targets=_means(data.images))
        # the registry's models have at least 2 outputs: the first is the prediction, the second unused
        spec = PreprocessingSpec(image_size=SIZE, channels=1, mean=(0.0,), std=(1.0,), task=NAME, outputs=2)
        return data, spec, []

    def loss(self, output, target):
        return F.mse_loss(output[:, 0].float(), target)

    def epoch_metrics(self, output, target):
        mae = float((output[:, 0].float() - target).abs().mean())
        return {"val_loss": float(F.mse_loss(output[:, 0].float(), target)), "val_neg_mae": -mae}

    def evaluate(self, loaded, sub, ctx) -> Evaluation:
        data = prepare(sub, [], SIZE, 1, workers=0, progress=False)
        target, pred = _means(data.images), self._predict(loaded, data.images)
        errors = np.abs(pred - target)
        rng = np.random.default_rng(0)
        boot = [errors[rng.integers(0, len(errors), len(errors))].mean() for _ in range(ctx.n_bootstrap)]
        df = data.manifest.df
        cases = [
            {
                "case_id": str(c),
                "patient_id": str(p),
                "target": round(float(t), 6),
                "prediction": round(float(y), 6),
            }
            for c, p, t, y in zip(df["case_id"], df["patient_id"], target, pred)
        ]
        metrics = {
            "mae": {
                "value": float(errors.mean()),
                "ci95": [float(np.percentile(boot, q)) for q in (2.5, 97.5)],
            }
        }
        table = pd.DataFrame(
            {"case_id": df["case_id"], "image": df["image"], "target": target, "prediction": pred}
        )
        return Evaluation(cases=cases, result={"metrics": metrics}, predictions=table, skipped=data.skipped)

    def write_prediction(self, loaded, path, out):
        return {"prediction": float(self._predict(loaded, load_image(str(path), SIZE, 1)[None])[0])}

    @staticmethod
    @torch.no_grad()
    def _predict(loaded, images: np.ndarray) -> np.ndarray:
        x = normalize(torch.from_numpy(np.ascontiguousarray(images)), loaded.spec)
        return loaded.model.eval()(x)[:, 0].float().numpy()


def _means(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).mean(1) / 255.0).astype(np.float32)


@pytest.fixture
def images_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        level = rng.uniform(20, 230)
        path = tmp_path / "img" / f"case{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.clip(rng.normal(level, 10, (SIZE, SIZE)), 0, 255).astype(np.uint8)).save(path)
        rows.append({"image": f"img/{path.name}", "split": "test" if i % 5 == 0 else ""})
    pd.DataFrame(rows).to_csv(tmp_path / "images.csv", index=False)
    return tmp_path / "images.csv"


def test_a_task_registered_in_one_file_trains_evaluates_and_predicts(tmp_path, images_csv, one_thread):
    run = medlens.train(
        images_csv,
        tmp_path / "run",
        task=NAME,
        model="toy-mean",
        epochs=30,
        lr=0.05,
        augment=False,
        batch_size=8,
        scheduler="none",
        progress=False,
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == NAME and summary["split"] == "test" and summary["n_cases"] == 6
    assert set(summary["metrics"]) == {"mae"} and summary["metrics"]["mae"]["value"] < 0.1
    assert {"target", "prediction"} <= set(summary["cases"][0])
    assert (run / "predictions.csv").is_file() and (run / "report.html").is_file()
    again = medlens.evaluate(run, out=tmp_path / "eval", progress=False)
    assert again["metrics"] == summary["metrics"]
    [record] = medlens.predict(run, [tmp_path / "img" / "case01.png"])
    assert set(record) - {"ood"} == {"path", "prediction"} and 0 <= record["prediction"] <= 1.2
    assert isinstance(record["ood"]["flag"], bool)  # every 2D run's predictions carry the OOD flag


def test_registry_refuses_duplicates_and_names_unknown_tasks():
    assert list_tasks()[:3] == ["classification", "segmentation", "detection"] and NAME in list_tasks()
    assert isinstance(get_task(NAME), MeanIntensityTask)
    with pytest.raises(ValueError, match="already registered"):
        register_task(NAME)(MeanIntensityTask)
    with pytest.raises(ValueError, match="already registered|built-in task"):
        register_task("detection")(type("Other", (Task,), {}))
    with pytest.raises(MedlensError, match="Did you mean 'segmentation'"):
        get_task("segmentaton")


def test_a_task_without_explain_or_triage_hooks_says_so():
    task = get_task(NAME)
    assert task.explainer is None
    with pytest.raises(NotImplementedError, match=f"task '{NAME}' defines neither explain"):
        task.explain(None, [], None)
    with pytest.raises(NotImplementedError, match="triage_score"):
        task.triage_score({}, None)
    # the built-in tasks name the explainers registered above the task layer
    assert [get_task(n).explainer for n in ("classification", "segmentation", "detection")] == [
        "classification",
        "segmentation",
        "detection",
    ]
