"""Hostile-input cases of the second probe: runfiles (see docs/robustness.md, "Second probe: runfiles").

Every case damages a copy of the shared run (``ctx.tmp/run``, never ``ctx.run`` itself); cases that need the
run's training images also write ``ctx.tmp/data``, the same generated images the run's manifest points to
(``../data/...``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from runfile_helpers import damage_model, zip_bomb

from badinput import make
from badinput.cases import Ctx, case, one_line_error


def _copy(ctx: Ctx, data: bool = False) -> Path:
    """A copy of the shared run to damage (and its training images beside it when ``data``)."""
    run = shutil.copytree(ctx.run, ctx.tmp / "run")
    if data:
        ctx.data()
    return run


def _predict(run: Path, ctx: Ctx, *extra) -> list:
    return ["predict", run, make.gray_png(ctx.tmp / "x.png"), *extra]


def _with_model(change):
    def build(ctx: Ctx) -> Path:
        run = _copy(ctx)
        damage_model(run / "model.pt", change)
        return run

    return build


def _first_key(p: dict) -> str:
    return next(iter(p["state_dict"]))


# ---------------------------------------------------------------------------------------------------------
# model.pt
# ---------------------------------------------------------------------------------------------------------


def _bomb(ctx: Ctx) -> Path:
    run = _copy(ctx)
    zip_bomb(run / "model.pt")
    return run


case("run-model-zip-bomb", 2, "zip records declare 80.0 MiB once inflated", check=one_line_error)(
    lambda ctx: _predict(_bomb(ctx), ctx)
)
MODEL_DAMAGES = {
    "weights-wrong-shape": (
        lambda p: p["state_dict"].update({_first_key(p): torch.zeros(3, 3)}),
        "its weights do not fit the logreg network its spec describes",
    ),
    "weights-missing": (lambda p: p["state_dict"].pop(_first_key(p)), "Missing key(s) in state_dict"),
    "classes-mismatch": (
        lambda p: p["spec"].update(class_names=["a", "b", "c"]),
        "3 outputs for classes a, b, c",
    ),
    "no-spec": (lambda p: p.pop("spec"), "is damaged: it holds no preprocessing spec; re-train, or copy"),
    "string-spec": (lambda p: p.update(spec="16px"), "its preprocessing spec is a str, not a mapping"),
    "image-size-0": (
        lambda p: p["spec"].update(image_size=0),
        "image_size must be between 8 and 2048 pixels, got 0",
    ),
}
for _name, (_change, _msg) in MODEL_DAMAGES.items():
    case(f"run-model-{_name}", 2, _msg, check=one_line_error)(
        lambda ctx, c=_change: _predict(_with_model(c)(ctx), ctx)
    )
case("run-evaluate-model-weights-mismatch", 2, "re-train, or copy the model.pt from the run that made it")(
    lambda ctx: ["evaluate", _with_model(MODEL_DAMAGES["classes-mismatch"][0])(ctx), "--quiet"]
)


# ---------------------------------------------------------------------------------------------------------
# calibration.json and operating_point.json
# ---------------------------------------------------------------------------------------------------------


def _with_file(name: str, text: str, data: bool = False):
    def build(ctx: Ctx) -> Path:
        run = _copy(ctx, data=data)
        (run / name).write_text(text)
        return run

    return build


CALIBRATIONS = {
    "negative": ("-1", "calibration.json is damaged: T = -1 is outside the sane range [0.05, 20]"),
    "nan": ("NaN", "calibration.json is damaged: T is nan, not a finite number"),
    "zero": ("0", "T = 0 is outside the sane range"),
    "huge": ("1e308", "T = 1e+308 is outside the sane range"),
    "string": ('"warm"', "T is 'warm', not a number"),
}
for _name, (_value, _msg) in CALIBRATIONS.items():
    _text = f'{{"method": "temperature", "T": {_value}, "fit_on": "val"}}'
    case(f"run-calibration-{_name}", 2, _msg, check=one_line_error)(
        lambda ctx, t=_text: _predict(_with_file("calibration.json", t)(ctx), ctx, "--json")
    )
case("run-evaluate-calibration-negative", 2, "or delete the file to use the uncalibrated probabilities")(
    lambda ctx: ["evaluate", _with_file("calibration.json", '{"method": "temperature", "T": -1}')(ctx)]
)

OPERATING_POINTS = {
    "string": ('{"class": "cyst", "threshold": "high"}', "threshold 'high' is not a number"),
    "unknown-class": (
        '{"class": "nosuchclass", "threshold": 0.5}',
        "class 'nosuchclass' is not one of the model's classes",
    ),
    "threshold-7": ('{"class": "cyst", "threshold": 7}', "threshold 7 is not between 0 and 1 (exclusive)"),
}
for _name, (_text, _msg) in OPERATING_POINTS.items():
    case(f"run-operating-point-{_name}", 2, _msg, check=one_line_error)(
        lambda ctx, t=_text: _predict(_with_file("operating_point.json", t)(ctx), ctx)
    )
case("run-explain-operating-point-threshold-7", 2, "operating_point.json is damaged: threshold 7")(
    lambda ctx: [
        "explain",
        _with_file("operating_point.json", OPERATING_POINTS["threshold-7"][0])(ctx),
        make.gray_png(ctx.tmp / "x.png"),
        "-o",
        ctx.tmp / "ex",
    ]
)
case("run-evaluate-threshold-7", 2, "--threshold must be between 0 and 1 (exclusive), got 7.0")(
    lambda ctx: ["evaluate", _copy(ctx), "--threshold", "7", "-o", ctx.tmp / "ev", "--quiet"]
)
case("run-evaluate-positive-unknown", 2, "positive class 'nosuchclass' is not one of the classes")(
    lambda ctx: [
        "evaluate",
        _copy(ctx),
        "--threshold",
        "0.4",
        "--positive",
        "nosuchclass",
        "-o",
        ctx.tmp / "ev",
        "--quiet",
    ]
)
case(
    "run-evaluate-threshold-replaces-damaged",
    0,
    "report: ",
    check=lambda ctx, _out: _threshold_is(ctx.tmp / "run", 0.4),
)(
    lambda ctx: [
        "evaluate",
        _with_file("operating_point.json", OPERATING_POINTS["unknown-class"][0], data=True)(ctx),
        "--threshold",
        "0.4",
        "-o",
        ctx.tmp / "ev",
        "--bootstrap",
        "10",
        "--quiet",
    ]
)


def _threshold_is(run: Path, value: float) -> None:
    import json

    point = json.loads((run / "operating_point.json").read_text())
    assert point == {**point, "class": "normal", "threshold": value}, point


SIDE_FILES = {
    "train-json-not-json": ("train.json", "{bad", "evaluate", "train.json is damaged (Expecting property"),
    "train-json-a-list": ("train.json", "[1, 2]", "predict", "train.json is damaged (it holds a list"),
    "config-yaml-not-yaml": ("config.yaml", "{: : [", "evaluate", "config.yaml is damaged (while parsing"),
}
for _name, (_file, _text, _cmd, _msg) in SIDE_FILES.items():
    case(f"run-{_name}", 2, _msg, check=one_line_error)(
        lambda ctx, f=_file, t=_text, c=_cmd: (
            _predict(_with_file(f, t)(ctx), ctx)
            if c == "predict"
            else ["evaluate", _with_file(f, t, data=True)(ctx), "-o", ctx.tmp / "ev", "--quiet"]
        )
    )

# ---------------------------------------------------------------------------------------------------------
# medlens calibrate
# ---------------------------------------------------------------------------------------------------------


def _flipped_val(ctx: Ctx) -> Path:
    """The model is wrong on every validation case: no temperature fits (T runs off to infinity)."""
    run = _copy(ctx, data=True)
    manifest = pd.read_csv(run / "manifest.csv")
    val = manifest["split"] == "val"
    manifest.loc[val, "label"] = manifest.loc[val, "label"].map({"cyst": "normal", "normal": "cyst"})
    manifest.to_csv(run / "manifest.csv", index=False)
    return run


case("run-calibrate-train-split", 2, "refusing to calibrate on the train split", check=one_line_error)(
    lambda ctx: ["calibrate", _copy(ctx), "--split", "train"]
)
case(
    "run-calibrate-degenerate-fit",
    2,
    "temperature scaling degenerated on the 2 cases of the val split",
    check=one_line_error,
)(lambda ctx: ["calibrate", _flipped_val(ctx), "--quiet"])
case("run-calibrate-few-cases", 0, "warning: fitted on only 2 cases (fewer than 20): T is poorly determined")(
    lambda ctx: ["calibrate", _copy(ctx, data=True), "--quiet"]
)
case("run-calibrate-replaces-damaged", 0, "temperature T =")(
    lambda ctx: [
        "calibrate",
        _with_file("calibration.json", '{"method": "temperature", "T": NaN}', data=True)(ctx),
        "--quiet",
    ]
)

# ---------------------------------------------------------------------------------------------------------
# explain: the embedding-index cache and --localisation
# ---------------------------------------------------------------------------------------------------------


def _index_damaged(damage):
    """A run copy whose explain_index.npz (built by a first explain, in the build) is then damaged."""

    def build(ctx: Ctx) -> list:
        from medlens.explaining.run import explain

        run = _copy(ctx, data=True)
        image = make.gray_png(ctx.tmp / "x.png")
        explain(run, [image], ctx.tmp / "first", progress=False)
        damage(run / "explain_index.npz")
        return ["explain", run, image, "-o", ctx.tmp / "ex", "--json"]

    return build


def _pickled(path: Path) -> None:
    np.savez(path, train=np.array([{"a": 1}], dtype=object), val_scores=np.ones(2))


def _nan(path: Path) -> None:
    with np.load(path) as good:
        train, val_scores = good["train"], good["val_scores"]
    np.savez(path, train=train * np.nan, val_scores=val_scores)


case("run-explain-index-garbage", 0, "explain_index.npz was damaged (File is not a zip file)")(
    _index_damaged(lambda p: p.write_bytes(b"PK\x03\x04 not really a zip" * 8))
)
case("run-explain-index-pickled", 0, "it is a cache, so it was rebuilt from the run's training data")(
    _index_damaged(_pickled)
)
case("run-explain-index-nan", 0, "explain_index.npz was damaged (it holds NaN/inf values)")(
    _index_damaged(_nan)
)
case("run-explain-localisation-no-masks", 2, "has no lesion masks to score the maps against")(
    lambda ctx: ["explain", ctx.run, "--localisation", ctx.data(), "-o", ctx.tmp / "loc"]
)
