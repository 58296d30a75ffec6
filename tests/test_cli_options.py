"""`medlens train`'s options are built from TrainConfig's fields: every field documented, the defaults
--help shows are the dataclass's, and an option left out never overrides the --config file."""

from __future__ import annotations

import dataclasses
import re

import pytest
import typer.rich_utils
import yaml
from cli_helpers import run_cli

from medlens.errors import MedlensError
from medlens.training.config import TrainConfig


def _option_name(f: dataclasses.Field) -> str:
    names = f.metadata.get("option") or f"--{f.name.replace('_', '-')}"
    return (names if isinstance(names, str) else names[0]).split("/")[0]


def _help_rows(monkeypatch, capsys) -> dict[str, str]:
    """``medlens train --help``, wide enough for one line per option: {"--epochs": that line}."""
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 400)
    code, out, _ = run_cli(monkeypatch, capsys, "train", "--help")
    assert code == 0
    rows = {}
    for line in out.splitlines():
        m = re.match(r"│\s*\*?\s*(--[\w-]+)\s", line)
        if m:
            rows[m.group(1)] = line
    return rows


def test_every_field_is_documented_and_an_option_or_config_only(monkeypatch, capsys):
    rows = _help_rows(monkeypatch, capsys)
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata.get("help", "").strip(), f"TrainConfig.{f.name} has no help metadata"
        if f.metadata.get("cli", True) is False:
            assert _option_name(f) not in rows, f"config-only {f.name} is offered as an option"
        else:
            assert _option_name(f) in rows, f"TrainConfig.{f.name} is not a `medlens train` option"
            assert f.metadata["help"].split()[0] in rows[_option_name(f)]


def test_help_shows_the_dataclass_defaults(monkeypatch, capsys):
    rows = _help_rows(monkeypatch, capsys)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("cli", True) is False:
            continue
        # the field's own default (None = "planned" or "the task's", said in the help text)
        row, value = rows[_option_name(f)], f.default if f.default is None else getattr(defaults, f.name)
        shown = re.search(r"\[default: (.*?)\]", row)
        if value is None:  # "the model's", "no limit": said in the help text, not as a value
            assert shown is None, f"{f.name}: {row}"
            continue
        assert shown, f"{_option_name(f)} shows no default: {row}"
        text = shown.group(1)
        if isinstance(value, bool):
            assert text == ("(on)" if value else "(off)"), f.name
        elif isinstance(value, (int, float)):
            assert float(text) == value, f.name
        else:
            assert text == str(value), f.name


def test_user_option_names_are_kept(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "train", "--help")
    assert code == 0
    for name in (
        "--model",
        "-m",
        "--epochs",
        "--batch-size",
        "--lr",
        "--augment",
        "--no-augment",
        "--freeze-backbone",
        "--audit-fix",
        "--no-audit-fix",
        "--boxes-from-masks",
        "--model-arg",
        "--patch-size",
        "--spacing",
        "--max-image-mb",
        "--task",
        "--config",
        "--resume",
        "--overwrite",
        "--quiet",
        "-q",
        "-o",
        "--output",
        "--samples-per-volume",
        "--intensity",
        "--precision",
    ):
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", out), name


@pytest.fixture
def captured(monkeypatch):
    """Stop `medlens train` at the config it would train with."""
    import medlens.pipeline.steps

    seen = []

    def fake_train(src, output, cfg, **kwargs):
        seen.append(cfg)
        raise MedlensError("stopped by the test")

    monkeypatch.setattr(medlens.pipeline.steps, "train", fake_train)
    return seen


def _train(monkeypatch, capsys, captured, tmp_path, *args) -> TrainConfig:
    code, _, err = run_cli(monkeypatch, capsys, "train", tmp_path, "-o", tmp_path / "run", *args)
    assert code == 2 and "stopped by the test" in err, err
    return captured.pop()


def test_config_file_values_survive_unset_options(monkeypatch, capsys, captured, tmp_path):
    config = tmp_path / "config.yaml"
    values = {"epochs": 3, "augment": False, "lr": 0.01, "patch_size": [64, 64, 16], "workers": 0}
    config.write_text(yaml.safe_dump(values))
    cfg = _train(monkeypatch, capsys, captured, tmp_path, "--config", config)
    assert (cfg.epochs, cfg.augment, cfg.lr, cfg.patch_size, cfg.workers) == (3, False, 0.01, [64, 64, 16], 0)
    assert cfg.batch_size == TrainConfig().batch_size

    cfg = _train(
        monkeypatch,
        capsys,
        captured,
        tmp_path,
        "--config",
        config,
        "--epochs",
        "16",  # the dataclass default, given on purpose: it still overrides the file
        "--augment",
        "--patch-size",
        "32,32,16",
        "--model-arg",
        "channels=8,16",
    )
    assert (cfg.epochs, cfg.augment, cfg.patch_size) == (16, True, [32, 32, 16])
    assert cfg.model_args == {"channels": [8, 16]}
    assert (cfg.lr, cfg.workers) == (0.01, 0)


def test_no_config_and_no_options_is_the_dataclass(monkeypatch, capsys, captured, tmp_path):
    assert _train(monkeypatch, capsys, captured, tmp_path) == TrainConfig()
