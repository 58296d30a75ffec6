"""A damaged model.pt is refused in one line naming it (never an internal error, never inflated first)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from runfile_helpers import damage_model, zip_bomb

from medlens.data.spec import PreprocessingSpec
from medlens.errors import MedlensError
from medlens.models import create_model
from medlens.models.checkpoint import load_model, save_model

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = PreprocessingSpec(image_size=16, channels=1, mean=(0.5,), std=(0.25,), class_names=("a", "b"))
REDO = "re-train, or copy the model.pt from the run that made it"


@pytest.fixture
def model_file(tmp_path) -> Path:
    model = create_model("logreg", num_classes=2, in_channels=1, image_size=16)
    return save_model(tmp_path / "model.pt", model, name="logreg", options={}, spec=SPEC)


def _first_key(p: dict) -> str:
    return next(iter(p["state_dict"]))


DAMAGES = {
    "weights-of-another-shape": (
        lambda p: p["state_dict"].update({_first_key(p): torch.zeros(3, 3)}),
        "its weights do not fit the logreg network its spec describes",
    ),
    "missing-weights": (lambda p: p["state_dict"].pop(_first_key(p)), "Missing key(s) in state_dict"),
    "classes-not-matching-the-head": (
        lambda p: p["spec"].update(class_names=["a", "b", "c"]),
        "3 outputs for classes a, b, c",
    ),
    "no-spec": (lambda p: p.pop("spec"), "it holds no preprocessing spec"),
    "string-spec": (lambda p: p.update(spec="16px"), "its preprocessing spec is a str, not a mapping"),
    "image-size-0": (
        lambda p: p["spec"].update(image_size=0),
        "its preprocessing spec is invalid (image_size must be between 8 and 2048 pixels, got 0)",
    ),
    "unknown-spec-field-type": (lambda p: p["spec"].update(mean=5), "its preprocessing spec is invalid"),
    "no-state-dict": (lambda p: p.update(state_dict="x"), "it holds no weights"),
    "unknown-network": (lambda p: p.update(model_name="nosuchnet"), "a network medlens cannot build"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_damaged_model_file_is_one_line_naming_it(model_file, damage):
    change, words = DAMAGES[damage]
    damage_model(model_file, change)
    with pytest.raises(MedlensError) as err:
        load_model(model_file)
    text = str(err.value)
    assert words in text and str(model_file) in text and REDO in text, text
    assert "\n" not in text


def test_intact_model_file_loads(model_file):
    loaded = load_model(model_file)
    assert loaded.spec.class_names == ("a", "b") and loaded.calibration is None


def test_zip_bomb_model_file_is_refused_before_it_is_inflated(tmp_path, monkeypatch):
    zip_bomb(tmp_path / "model.pt")

    def never(*_a, **_k):
        raise AssertionError("torch.load was called on a zip bomb")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(MedlensError, match="once inflated"):
        load_model(tmp_path)
