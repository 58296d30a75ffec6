"""The public names of ``medlens`` are always functions, even after every submodule has been imported."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import medlens
from medlens.errors import MedlensError

PUBLIC_FUNCTIONS = (
    "ingest",
    "audit",
    "train",
    "evaluate",
    "calibrate",
    "explain",
    "triage",
    "predict",
    "compare",
    "summary",
    "convert",
    "demo",
    "load_run",
    "learning_curve",
    "list_models",
    "create_model",
    "search",
)


def _import_every_submodule() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(medlens.__path__, prefix="medlens."):
        if info.name == "medlens.__main__":
            continue  # runs the CLI
        importlib.import_module(info.name)
        names.append(info.name)
    return names


def test_public_names_stay_functions_after_importing_every_submodule():
    names = _import_every_submodule()
    assert "medlens.evaluation.metrics" in names and "medlens.training.fit" in names
    for name in PUBLIC_FUNCTIONS:
        value = getattr(medlens, name)
        assert inspect.isfunction(value) or inspect.isfunction(inspect.unwrap(value)), (name, value)
    assert set(PUBLIC_FUNCTIONS) <= set(medlens.__all__)


def test_each_public_function_runs(tmp_path, tiny_dataset):
    _import_every_submodule()
    manifest = medlens.ingest(tiny_dataset)
    assert len(manifest) == 24 and manifest.classes == ["cyst", "normal"]
    # binary logistic regression: one weight per pixel and a bias (a sigmoid, not two softmax outputs)
    assert (
        medlens.summary("logreg", input_size=16, in_channels=1, num_classes=2)["total_params"] == 16 * 16 + 1
    )
    assert "cnn-small" in [m.name for m in medlens.list_models()]
    assert medlens.create_model("logreg", num_classes=2, image_size=8) is not None
    result = medlens.audit(tiny_dataset, tmp_path / "audit", progress=False, workers=1)
    assert result.summary["n_images"] == 24
    missing = tmp_path / "no-run"
    for call in (
        lambda: medlens.evaluate(missing),
        lambda: medlens.predict(missing, []),
        lambda: medlens.load_run(missing),
        lambda: medlens.compare([missing, missing], tmp_path / "c.html"),
        lambda: medlens.convert("nope", tiny_dataset, tmp_path / "x"),
        lambda: medlens.train(tiny_dataset, tmp_path / "r", model="no-such-model"),
        lambda: medlens.learning_curve(tiny_dataset, tmp_path / "curve", fractions=[2.0]),
    ):
        with pytest.raises(MedlensError):
            call()
    assert callable(medlens.demo)  # trains for a minute: the CLI test runs it
