"""One clear line for every user mistake; one line and a log file for a bug; --overwrite never destroys
data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

from medlens.errors import MedlensError
from medlens.training.config import TrainConfig
from medlens.utils.files import MARKER, check_output_path, is_medlens_output, read_marker, write_marker


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDLENS_DEBUG", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def litter(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".partial")) or ".tmp" in p.name]


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def fails(monkeypatch, capsys, *args, code: int = 2) -> str:
    """Run ``medlens ARGS``; assert ``code``, no traceback and a one-line message; return that line."""
    got, out, err = run_cli(monkeypatch, capsys, *args)
    assert got == code, (got, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- 1. unexpected errors -------------------------------------------------------------------------------


def _break_models(monkeypatch):
    import medlens.models.registry as registry

    def boom(*_a, **_k):
        raise RuntimeError("boom happened\nsecond line of the message")

    monkeypatch.setattr(registry, "list_models", boom)


def test_internal_error_is_one_line_with_a_log(monkeypatch, capsys, tmp_path):
    _break_models(monkeypatch)
    line = fails(monkeypatch, capsys, "models", code=1)
    assert line.startswith("internal error in medlens models: RuntimeError: boom happened — traceback in ")
    assert line.endswith("; please report it") and "second line" not in line
    log = Path(line.split("traceback in ", 1)[1].rsplit("; please report it", 1)[0])
    assert log.parent == tmp_path / "cache" / "medlens" / "logs" and "-models-" in log.name
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "second line of the message" in text
    assert "command: medlens models" in text


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (EOFError("ran out of input"), 1, "internal error in medlens models: EOFError: ran out of input"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_eof_and_ctrl_c_are_named_never_a_bare_aborted(monkeypatch, capsys, tmp_path, raised, code, line):
    """click turns an EOFError raised inside a command into a bare "Aborted!" (exit 1), which hides it."""
    import medlens.models.registry as registry

    def stop(*_a, **_k):
        raise raised

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "list_models", stop)
    got = fails(monkeypatch, capsys, "models", code=code)
    assert got.startswith(line) and "Aborted" not in got


def test_internal_error_log_falls_back_to_temp_dir(monkeypatch, capsys, tmp_path):
    import tempfile

    _break_models(monkeypatch)
    (tmp_path / "notadir").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "notadir"))  # cannot hold a folder
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    line = fails(monkeypatch, capsys, "models", code=1)
    log = Path(line.split("traceback in ", 1)[1].rsplit("; please report it", 1)[0])
    assert log.parent == tmp_path / "tmp" / "medlens-logs" and "RuntimeError" in log.read_text()


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_prints_the_traceback(monkeypatch, capsys, how):
    _break_models(monkeypatch)
    if how == "env":
        monkeypatch.setenv("MEDLENS_DEBUG", "1")
    code, _out, err = run_cli(monkeypatch, capsys, *(["--debug"] if how == "option" else []), "models")
    assert code == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom happened" in err
    assert "traceback in" not in err


def test_usage_errors_keep_exit_code_2(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "train", "--no-such-option")
    assert code == 2 and "No such option" in out + err and "internal error" not in out + err


# --- 2. Lightning options, before any folder or data ------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--accelerator", "gpu"],
            "--accelerator gpu: no GPU is visible to torch on this machine; use --accelerator cpu or auto",
        ),
        (["--accelerator", "cuda"], "--accelerator cuda: no GPU is visible to torch"),
        (
            ["--accelerator", "gpux"],
            "--accelerator must be one of auto, cpu, gpu, cuda, mps, tpu, got 'gpux'. Did you mean 'gpu'",
        ),
        (
            ["--precision", "8"],
            "--precision must be one of auto, 32, bf16-mixed, 16-mixed (also 32-true, bf16, 16), got '8'",
        ),
        (["--precision", "64"], "--precision must be one of"),
        (["--devices", "0"], "--devices must be at least 1 (devices per node), got 0"),
        (["--devices", "-2"], "--devices must be at least 1"),
        (["--num-nodes", "0"], "--num-nodes must be at least 1, got 0"),
        (["--strategy", "foo"], "--strategy must be one of auto, ddp, "),
        (["--strategy", "dpp"], "Did you mean 'ddp'"),
        (["--strategy", "fsdp"], "--strategy fsdp needs CUDA GPUs"),
    ],
)
def test_lightning_options_checked_up_front(monkeypatch, capsys, tmp_path, tiny_dataset, args, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    line = fails(monkeypatch, capsys, "train", tiny_dataset, "-o", tmp_path / "run", *args)
    assert message in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    assert litter(tmp_path) == []


def test_more_devices_than_gpus(monkeypatch, capsys, tmp_path, tiny_dataset):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    line = fails(
        monkeypatch,
        capsys,
        "train",
        tiny_dataset,
        "-o",
        tmp_path / "run",
        "--accelerator",
        "gpu",
        "--devices",
        "2",
    )
    assert (
        line == "error: --devices 2: only 1 GPU(s) visible to torch on this machine; use --devices 1 or fewer"
    )
    assert litter(tmp_path) == [] and not (tmp_path / "run").exists()


def test_precision_spellings_are_mapped():
    assert TrainConfig(precision="bf16").precision == "bf16-mixed"
    assert TrainConfig(precision="16").precision == "16-mixed"
    assert TrainConfig(precision="32-true").precision == "32"
    assert TrainConfig.from_dict({"precision": 32}).precision == "32"  # YAML reads it as a number
    assert TrainConfig(strategy="ddp").strategy == "ddp"


# --- 3. config values type-checked ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ({"epochs": "one"}, "config key epochs must be an integer or null, got 'one'"),
        ({"epochs": True}, "config key epochs must be an integer or null, got True"),
        ({"epochs": 2.5}, "config key epochs must be an integer or null, got 2.5"),
        ({"lr": "fast"}, "config key lr must be a number or null, got 'fast'"),
        ({"weight_decay": None}, "config key weight_decay must be a number, got None"),
        ({"augment": "yes"}, "config key augment must be true or false, got 'yes'"),
        ({"model": 5}, "config key model must be a string or null, got 5"),
        ({"image_size": "big"}, "config key image_size must be an integer or null, got 'big'"),
        ({"patch_size": [96, "a", 32]}, "config key patch_size must be a list of integers or null"),
        ({"spacing": "1,1,1"}, "config key spacing must be a list of numbers or null, got '1,1,1'"),
        ({"model_args": [1, 2]}, "config key model_args must be a mapping of option: value or null"),
    ],
)
def test_config_types(data, message):
    with pytest.raises(MedlensError) as info:
        TrainConfig.from_dict(data)
    assert message in str(info.value)


def test_config_types_accepted():
    cfg = TrainConfig.from_dict({"lr": "3e-3", "fraction": 1, "spacing": [1, 1.5, 2], "pretrained": None})
    assert cfg.lr == pytest.approx(0.003) and isinstance(cfg.fraction, float) and cfg.spacing == [1, 1.5, 2]
    with pytest.raises(MedlensError, match="config key epochs must be an integer"):
        TrainConfig().replace(epochs="3")  # the CLI path (replace) is checked the same way


def test_config_file_with_bad_type(monkeypatch, capsys, tmp_path, tiny_dataset):
    config = tmp_path / "cfg.yaml"
    config.write_text("epochs: one\n")
    line = fails(monkeypatch, capsys, "train", tiny_dataset, "-o", tmp_path / "run", "--config", config)
    assert line == "error: config key epochs must be an integer or null, got 'one'"
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


# --- 4. summary input size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input-size", "0"], "--input-size must be between 8 and 1024 pixels for a 2D input, got 0"),
        (
            ["--input-size", "100000"],
            "--input-size must be between 8 and 1024 pixels for a 2D input, got 100000",
        ),
        (["--channels", "0"], "--channels must be between 1 and 16, got 0"),
        (["--channels", "99"], "--channels must be between 1 and 16, got 99"),
    ],
)
def test_summary_input_checked(monkeypatch, capsys, args, message):
    assert message in fails(monkeypatch, capsys, "summary", "cnn-small", *args)


# --- 5. -o that is a file, or under a file
# --------------------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "afile.txt"
    path.write_text("keep me")
    return path


@pytest.mark.parametrize("command", ["train", "audit", "curve", "evaluate", "predict", "convert"])
def test_output_is_a_file(monkeypatch, capsys, tmp_path, tiny_dataset, a_file, command):
    image = next(tiny_dataset.rglob("*.png"))
    args = {
        "train": ["train", tiny_dataset, "-o", a_file, "--overwrite"],
        "audit": ["audit", tiny_dataset, "-o", a_file],
        "curve": ["curve", tiny_dataset, "-o", a_file, "--overwrite"],
        "evaluate": ["evaluate", tmp_path / "run", "-o", a_file],
        "predict": ["predict", tmp_path / "run", image, "-o", a_file],
        "convert": ["convert", "slices-to-volumes", tiny_dataset, a_file, "--overwrite"],
    }[command]
    line = fails(monkeypatch, capsys, *args)
    assert f"{a_file} is a file, not a folder" in line
    assert a_file.read_text() == "keep me" and litter(tmp_path) == []


@pytest.mark.parametrize("command", ["train", "audit", "ingest"])
def test_output_under_a_file(monkeypatch, capsys, tmp_path, tiny_dataset, a_file, command):
    target = a_file / ("out.csv" if command == "ingest" else "out")
    line = fails(monkeypatch, capsys, command, tiny_dataset, "-o", target)
    assert f"{a_file} is a file, not a folder" in line and litter(tmp_path) == []


def test_ingest_output_is_a_folder(monkeypatch, capsys, tmp_path, tiny_dataset):
    (tmp_path / "out").mkdir()
    line = fails(monkeypatch, capsys, "ingest", tiny_dataset, "-o", tmp_path / "out")
    assert (
        line == f"error: -o {tmp_path / 'out'} is a folder; give a file path for the manifest CSV, e.g. "
        f"{tmp_path / 'out' / 'manifest.csv'}"
    )
    assert litter(tmp_path) == []


# --- 6. --overwrite never destroys data
# ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "{src}", "-o", "{src}", "--overwrite", "--epochs", "1"], "is the source"),
        (["train", "{src}", "-o", "{parent}", "--overwrite", "--epochs", "1"], "contains the source"),
        (["train", "{src}", "-o", "{src}/run", "--epochs", "1"], "lies inside the source folder"),
        (["convert", "slices-to-volumes", "{src}", "{src}", "--overwrite"], "is the source"),
        (["convert", "slices-to-volumes", "{src}", "{parent}", "--overwrite"], "contains the source"),
        (["curve", "{src}", "-o", "{src}", "--overwrite"], "is the source"),
        (["audit", "{src}", "-o", "{src}/audit"], "lies inside the source folder"),
    ],
)
def test_output_may_not_be_or_hold_the_source(monkeypatch, capsys, tmp_path, make_folders, args, message):
    src = make_folders(tmp_path / "proj" / "data", n_per_class=3)
    before = files_of(src)
    line = fails(monkeypatch, capsys, *[a.format(src=src, parent=src.parent) for a in args])
    assert message in line and "Choose" in line
    assert files_of(src) == before and litter(tmp_path) == []


def test_csv_source_and_its_image_folder_are_protected(monkeypatch, capsys, tmp_path, tiny_dataset):
    csv = tmp_path / "lists" / "manifest.csv"  # outside the image folder: that is found from its rows
    code, _, _ = run_cli(monkeypatch, capsys, "ingest", tiny_dataset, "-o", csv)
    assert code == 0
    before = files_of(tiny_dataset)
    line = fails(monkeypatch, capsys, "train", csv, "-o", tiny_dataset, "--overwrite", "--epochs", "1")
    assert "is the source" in line
    line = fails(monkeypatch, capsys, "ingest", csv, "-o", csv)  # would replace the user's CSV
    assert "is the source" in line
    line = fails(monkeypatch, capsys, "audit", csv, "--fix", csv, "-o", tmp_path / "audit")
    assert "--fix" in line and "is the source" in line
    assert files_of(tiny_dataset) == before and litter(tmp_path) == []


@pytest.mark.parametrize("command", ["train", "convert", "curve"])
def test_overwrite_refuses_a_folder_medlens_did_not_write(
    monkeypatch, capsys, tmp_path, tiny_dataset, command
):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("precious")
    args = {
        "train": ["train", tiny_dataset, "-o", mine, "--overwrite"],
        "convert": ["convert", "slices-to-volumes", tiny_dataset, mine, "--overwrite"],
        "curve": ["curve", tiny_dataset, "-o", mine, "--overwrite"],
    }[command]
    line = fails(monkeypatch, capsys, *args)
    assert line.startswith(
        f"error: {mine} exists and was not written by medlens; refusing to replace it — choose another"
    )
    assert (mine / "thesis.docx").read_text() == "precious" and litter(tmp_path) == []


def test_existing_output_without_overwrite(monkeypatch, capsys, tmp_path, tiny_dataset):
    (tmp_path / "run").mkdir()
    line = fails(monkeypatch, capsys, "train", tiny_dataset, "-o", tmp_path / "run")
    assert "already exists; choose another -o or pass --overwrite" in line


def test_stale_partial_not_written_by_medlens_is_kept(monkeypatch, capsys, tmp_path, tiny_dataset):
    partial = tmp_path / "run.partial"
    partial.mkdir()
    (partial / "notes.txt").write_text("mine")
    line = fails(monkeypatch, capsys, "train", tiny_dataset, "-o", tmp_path / "run")
    assert "was not written by medlens" in line and (partial / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_a_medlens_run(monkeypatch, capsys, tmp_path, tiny_dataset, one_thread):
    run = tmp_path / "run"
    base = ["train", tiny_dataset, "-o", run, "--epochs", "1", "--image-size", "32", "-q"]
    code, _, err = run_cli(monkeypatch, capsys, *base)
    assert code == 0, err
    marker = json.loads((run / MARKER).read_text())
    assert marker["kind"] == "run" and marker["medlens"] and "T" in marker["created"]
    (run / MARKER).unlink()  # a run from before markers: recognised by model.pt + train.json
    code, _, err = run_cli(monkeypatch, capsys, *base, "--overwrite")
    assert code == 0, err
    assert read_marker(run)["kind"] == "run" and litter(tmp_path) == []
    # evaluate / predict outputs that are files
    line = fails(monkeypatch, capsys, "evaluate", run, "-o", run / "summary.json")
    assert "is a file, not a folder" in line


def test_marker_helpers(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    assert not is_medlens_output(folder) and read_marker(folder) is None
    write_marker(folder, "volumes")
    assert is_medlens_output(folder) and read_marker(folder)["kind"] == "volumes"
    legacy = tmp_path / "legacy"
    (legacy / "imagesTr").mkdir(parents=True)
    (legacy / "manifest.csv").write_text("case_id\n")
    assert not is_medlens_output(legacy)  # an ingested dataset folder looks like this: never replaced
    (legacy / "manifest.csv").write_text("case_id,patient_id,split,image,mask,n_slices\n")
    assert is_medlens_output(legacy)
    run = tmp_path / "oldrun"
    run.mkdir()
    (run / "model.pt").write_bytes(b"")
    assert not is_medlens_output(run)
    (run / "train.json").write_text("{}")
    assert is_medlens_output(run)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_output_path(empty, overwrite=True) == empty.resolve()  # nothing to destroy
    with pytest.raises(MedlensError, match="already exists"):
        check_output_path(empty, overwrite=False)
