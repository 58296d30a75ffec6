"""`medlens train --resume`: a SIGKILLed run resumes to exactly the uninterrupted run; other options are
refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_helpers import run_cli

from medlens.errors import MedlensError

OPTS = [
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--model",
    "cnn-small",
    "--seed",
    "5",
    "--scheduler",
    "cosine",
]
TIMING = ["seconds"]


def _train_cmd(data: Path, run: Path, epochs: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "medlens",
        "train",
        str(data),
        "-o",
        str(run),
        "--epochs",
        str(epochs),
        *OPTS,
        "--quiet",
        *extra,
    ]


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=300).returncode
    assert rc == 0, f"{' '.join(cmd)} failed ({rc}):\n{log.read_text()[-3000:]}"


def _checkpoint_epochs(ckpt: Path) -> int:
    """Epochs recorded in a checkpoint's history (the rows the HistoryCallback saved in it)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["callbacks"]
    (rows,) = [v["rows"] for k, v in state.items() if "HistoryCallback" in k]
    return len(rows)


def _kill_mid_training(data: Path, run: Path, epochs: int, log: Path) -> int:
    """Start a run, SIGKILL it once an epoch checkpoint exists; the checkpoint's epoch count (0: missed)."""
    partial = run.with_name(run.name + ".partial")
    last = partial / "checkpoints" / "last.ckpt"
    with open(log, "w") as out:
        proc = subprocess.Popen(_train_cmd(data, run, epochs), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        try:
            while proc.poll() is None and not last.is_file():
                assert time.monotonic() < deadline, "no checkpoint within 180 s"
                time.sleep(0.02)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    if proc.returncode == 0 or not last.is_file():  # finished before the kill
        assert proc.returncode == 0, log.read_text()[-3000:]
        return 0
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert not run.exists()  # a killed run never looks complete
    done = _checkpoint_epochs(last)
    return done if done < epochs else 0  # killed during evaluation: training was not interrupted


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_uninterrupted_run(tmp_path, make_folders):
    data = make_folders(tmp_path / "d", n_per_class=40)
    run, epochs = tmp_path / "run", 6
    for _ in range(4):  # the kill must land mid-training; if the run outran it, make the run longer
        done = _kill_mid_training(data, run, epochs, tmp_path / "killed.log")
        if done:
            break
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(run.with_name("run.partial"), ignore_errors=True)
        epochs *= 2
    else:
        pytest.fail("could not SIGKILL the run between its first checkpoint and the end of training")
    assert 1 <= done < epochs, (done, epochs)
    print(f"killed after epoch {done} of {epochs}")
    _run(_train_cmd(data, run, epochs, "--resume"), tmp_path / "resume.log")
    full = tmp_path / "full"
    _run(_train_cmd(data, full, epochs), tmp_path / "full.log")
    assert not run.with_name("run.partial").exists()

    h_run, h_full = pd.read_csv(run / "history.csv"), pd.read_csv(full / "history.csv")
    assert h_run["epoch"].tolist() == list(range(1, epochs + 1))
    pd.testing.assert_frame_equal(h_run.drop(columns=TIMING), h_full.drop(columns=TIMING), check_exact=True)
    info = json.loads((run / "train.json").read_text())
    assert info["epochs_run"] == epochs and info["resumed_after_epoch"] == done
    s_run, s_full = (json.loads((r / "summary.json").read_text()) for r in (run, full))
    assert s_run["metrics"] == s_full["metrics"]
    assert [c["probabilities"] for c in s_run["cases"]] == [c["probabilities"] for c in s_full["cases"]]
    w_run, w_full = (torch.load(r / "model.pt", weights_only=True)["state_dict"] for r in (run, full))
    assert all(torch.equal(w_run[k], w_full[k]) for k in w_full)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, make_folders):
    """A run whose training finished but whose evaluation was interrupted: its partial folder remains."""
    import medlens.pipeline.steps as steps
    from medlens.pipeline.steps import train

    root = tmp_path_factory.mktemp("resume")
    data = make_folders(root / "d", n_per_class=8)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(steps, "evaluate", boom)
        with pytest.raises(KeyboardInterrupt):
            train(
                data, root / "run", epochs=1, image_size=32, batch_size=8, model="cnn-small", progress=False
            )
    return data, root / "run"


@pytest.mark.parametrize(
    "option, message",
    [
        (["--model", "resnet18"], "it was started with model cnn-small, not resnet18;"),
        (["--image-size", "64"], "it was started with image_size 32, not 64;"),
        (["--seed", "1", "--no-augment"], "augment True, not False, and seed 0, not 1;"),
    ],
)
def test_resume_refuses_other_options(interrupted, option, message, monkeypatch, capsys):
    data, run = interrupted
    partial = run.with_name("run.partial")
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        data,
        "-o",
        run,
        "--resume",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        *option,
        "--quiet",
    )
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"cannot resume {run}" in err and message in err and "start a new run (-o)" in err
    assert (partial / "checkpoints" / "last.ckpt").is_file() and (partial / "resume.json").is_file()


def test_one_cycle_run_cannot_be_extended(tmp_path):
    from medlens.models.registry import get_model_info
    from medlens.training.config import TrainConfig
    from medlens.training.resume import check_resume, save_resume_config

    partial = tmp_path / "run.partial"
    (partial / "checkpoints").mkdir(parents=True)
    cfg, info = TrainConfig(epochs=10), get_model_info("cnn-small")
    save_resume_config(partial, cfg)
    torch.save(
        {"state_dict": {}, "lr_schedulers": [{"total_steps": 40, "last_epoch": 12}]},
        partial / "checkpoints" / "last.ckpt",
    )
    check_resume(partial, cfg.replace(epochs=8, workers=0, max_minutes=5.0), info, run="r")  # fewer: allowed
    with pytest.raises(
        MedlensError, match="planned for 10 epochs; resume with --epochs 10 or fewer, or start a new run"
    ):
        check_resume(partial, cfg.replace(epochs=20), info, run="r")
    torch.save(
        {"state_dict": {}, "lr_schedulers": [{"T_max": 40, "last_epoch": 12}]},
        partial / "checkpoints" / "last.ckpt",
    )
    check_resume(partial, cfg.replace(epochs=20), info, run="r")  # cosine continues past its plan


class _Custom:
    """A class of the test module: a checkpoint holding one can only be read by unpickling code."""


def _damage(ckpt: Path, how: str) -> None:
    if how == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(4096)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif how == "random":
        ckpt.write_bytes(os.urandom(4096))
    elif how == "pickled":
        torch.save({"state_dict": {}, "callbacks": _Custom()}, ckpt)
    elif how == "no-state-dict":
        torch.save({"epoch": 3}, ckpt)
    else:
        ckpt.write_bytes(b"")


@pytest.mark.parametrize(
    "how, what",
    [
        ("truncated", "is not a readable PyTorch checkpoint (truncated or corrupted"),
        ("random", "is not a readable PyTorch checkpoint"),
        ("pickled", "holds pickled Python objects besides the weights"),
        ("zero-byte", "is empty (0 bytes)"),
        ("no-state-dict", "is not a training checkpoint (it holds no state_dict)"),
    ],
)
@pytest.mark.parametrize("recorded", [True, False], ids=["resume.json", "no-resume.json"])
def test_damaged_checkpoint_is_named_before_training(tmp_path, how, what, recorded):
    from medlens.models.registry import get_model_info
    from medlens.training.config import TrainConfig
    from medlens.training.resume import check_resume, save_resume_config

    partial = tmp_path / "run.partial"
    (partial / "checkpoints").mkdir(parents=True)
    ckpt = partial / "checkpoints" / "last.ckpt"
    _damage(ckpt, how)
    cfg = TrainConfig(epochs=2)
    if recorded:
        save_resume_config(partial, cfg)
    with pytest.raises(MedlensError) as err:
        check_resume(partial, cfg, get_model_info("cnn-small"), run=tmp_path / "run")
    text = str(err.value)
    assert text.startswith(f"cannot resume {tmp_path / 'run'}: its checkpoint {ckpt} {what}"), text
    assert "without --resume to start again" in text and f"or delete {partial}" in text
    assert "weights_only" not in text and "\n" not in text
    assert ckpt.is_file()  # never removed: the user decides


def test_lightning_gets_no_damaged_checkpoint(tmp_path, make_folders, monkeypatch, capsys):
    """The file Lightning would load is checked where it is handed over too (a DDP process, --final's
    selection fit): an empty checkpoint is named in one line, not click's bare "Aborted."."""
    data = make_folders(tmp_path / "d", n_per_class=4)
    partial = tmp_path / "run.partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "checkpoints" / "last.ckpt").write_bytes(b"")
    monkeypatch.setattr("medlens.training.fit.record_or_check", lambda *a, **k: None)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        data,
        "-o",
        tmp_path / "run",
        "--model",
        "logreg",
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--quiet",
        "--resume",
    )
    assert code == 2, out + err
    assert err.startswith("error: cannot resume") and "is empty (0 bytes)" in err, err
    assert "Aborted" not in out + err
