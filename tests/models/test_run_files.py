"""calibration.json and operating_point.json are checked when read: a damaged one is refused in one line
naming it, never applied (a negative or NaN temperature, a threshold of 7, a class the model lacks)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medlens.errors import MedlensError
from medlens.models.run_files import (
    T_MAX,
    T_MIN,
    read_calibration,
    read_operating_point,
    read_run_json,
    read_run_yaml,
)
from medlens.tasks.classification import decide, softmax
from medlens.utils.files import json_text

CLASSES = ["cyst", "normal"]


def _calibration(tmp_path, text: str):
    (tmp_path / "calibration.json").write_text(text)
    return read_calibration(tmp_path)


@pytest.mark.parametrize(
    "value, words",
    [
        ("-1", "T = -1 is outside the sane range [0.05, 20]"),
        ("0", "T = 0 is outside the sane range"),
        ("NaN", "T is nan, not a finite number"),
        ("Infinity", "T is inf, not a finite number"),
        ("1e308", "T = 1e+308 is outside the sane range"),
        ('"x"', "T is 'x', not a number"),
        ("true", "T is True, not a number"),
        ("null", "T is None, not a number"),
    ],
)
def test_damaged_temperature_is_refused_naming_the_file(tmp_path, value, words):
    with pytest.raises(MedlensError) as err:
        _calibration(tmp_path, f'{{"method": "temperature", "T": {value}, "fit_on": "val"}}')
    text = str(err.value)
    assert words in text and str(tmp_path / "calibration.json") in text, text
    assert f"run `medlens calibrate {tmp_path}` again, or delete the file" in text


def test_a_sane_temperature_is_read_and_absent_file_is_none(tmp_path):
    assert read_calibration(tmp_path) is None
    assert _calibration(tmp_path, '{"method": "temperature", "T": 1.5, "fit_on": "val"}')["T"] == 1.5
    assert T_MIN < 1 < T_MAX


def test_unknown_calibration_method_is_refused(tmp_path):
    with pytest.raises(MedlensError, match="method 'platt' is not 'temperature'"):
        _calibration(tmp_path, '{"method": "platt", "T": 1.0}')


@pytest.mark.parametrize(
    "point, words",
    [
        ({"class": "cyst", "threshold": "x"}, "threshold 'x' is not a number"),
        ({"class": "nosuch", "threshold": 0.5}, "class 'nosuch' is not one of the model's classes"),
        ({"class": "cyst", "threshold": 7}, "threshold 7 is not between 0 and 1"),
        ({"class": "cyst", "threshold": 0}, "threshold 0 is not between 0 and 1"),
        ({"class": "cyst", "threshold": float("nan")}, "threshold nan is not between 0 and 1"),
        ({"class": 3, "threshold": 0.5}, "class 3 is not one of the model's classes"),
    ],
)
def test_damaged_operating_point_is_refused_naming_the_file(tmp_path, point, words):
    (tmp_path / "operating_point.json").write_text(json.dumps(point))
    with pytest.raises(MedlensError) as err:
        read_operating_point(tmp_path, CLASSES)
    text = str(err.value)
    assert words in text and str(tmp_path / "operating_point.json") in text, text
    assert "--threshold T --positive CLASS`, or delete the file" in text


def test_a_sane_operating_point_is_read(tmp_path):
    assert read_operating_point(tmp_path, CLASSES) is None
    (tmp_path / "operating_point.json").write_text('{"class": "normal", "threshold": 0.3}')
    assert read_operating_point(tmp_path, CLASSES)["threshold"] == 0.3


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf])
def test_softmax_refuses_a_temperature_it_cannot_apply(temperature):
    with pytest.raises(MedlensError, match="finite positive number"):
        softmax(np.array([[1.0, 2.0]]), temperature)


@pytest.mark.parametrize("point", [{"class": "nosuch", "threshold": 0.5}, {"class": "cyst", "threshold": 7}])
def test_decide_never_ignores_an_unusable_operating_point(point):
    with pytest.raises(MedlensError, match="unusable operating point"):
        decide(np.array([[0.7, 0.3]]), CLASSES, point)


def test_json_text_is_always_valid_json():
    text = json_text([{"p": float("nan"), "q": np.float32(0.5), "r": [math.inf]}])
    assert json.loads(text) == [{"p": None, "q": 0.5, "r": [None]}]
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("train.json", "{bad", "train.json is damaged (Expecting property name"),
        ("train.json", "[1, 2]", "train.json is damaged (it holds a list, not a mapping)"),
        ("config.yaml", "{: : [", "config.yaml is damaged (while parsing a flow node)"),
        ("config.yaml", "- a\n- b\n", "config.yaml is damaged (it holds a list, not a mapping)"),
    ],
)
def test_damaged_training_facts_are_named_in_one_line(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    read = read_run_json if name.endswith(".json") else read_run_yaml
    with pytest.raises(MedlensError) as err:
        read(path)
    assert words in str(err.value) and "copy it from the run that made it, or re-train" in str(err.value)
    assert "\n" not in str(err.value)


def test_absent_or_empty_training_facts_are_empty(tmp_path):
    assert read_run_json(tmp_path / "train.json") == {} and read_run_yaml(tmp_path / "config.yaml") == {}
    (tmp_path / "config.yaml").write_text("")
    assert read_run_yaml(tmp_path / "config.yaml") == {}
