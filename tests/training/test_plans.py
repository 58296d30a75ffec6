"""Self-configuration: the fingerprint measures the data, the plan explains every choice, options win,
``--final`` refits without ever scoring the refit model on data it trained on, and a budget (only when given)
re-fits its schedule to the measured epoch time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import medlens
from medlens.cli import app
from medlens.data.fingerprint import fingerprint
from medlens.data.ingest import ingest
from medlens.errors import MedlensError
from medlens.models.registry import get_model_info
from medlens.training.callbacks import _retarget
from medlens.training.config import TrainConfig
from medlens.training.plans import PLANNED, make_plan


def _colour_folders(root, n=6, size=40):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(n):
            rgb = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)  # channels differ
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / cls / f"{i}.png")
    return root


def test_fingerprint_counts_sizes_and_channels(tmp_path, make_folders):
    grey = fingerprint(ingest(make_folders(tmp_path / "g", n_per_class=10, size=24)))
    assert grey["n_cases"] == 20 and grey["classes"] == {"cyst": 10, "normal": 10}
    assert grey["imbalance"] == 1.0 and grey["dims"] == 2 and grey["shape_median"] == [24, 24]
    assert grey["colour_share"] == 0.0 and grey["min_side_median"] == 24
    colour = fingerprint(ingest(_colour_folders(tmp_path / "c")))
    assert colour["colour_share"] == 1.0 and colour["shape_median"] == [40, 48]


def test_the_plan_never_upsamples_and_explains_every_choice(tmp_path, make_folders):
    data = make_folders(tmp_path / "d", n_per_class=10, size=24)
    plan = make_plan(data, TrainConfig(), get_model_info("cnn-small"), probe=False)
    choices = plan["choices"]
    assert set(choices) == set(PLANNED)
    assert {"model", "optimizer", "scheduler", "ema", "precision"} <= set(plan["defaults"])
    assert all(d["reason"] for d in plan["defaults"].values())
    assert all(c["reason"] and c["source"] in ("plan", "option", "model") for c in choices.values())
    assert choices["image_size"]["value"] == 24 and "never upsampled" in choices["image_size"]["reason"]
    assert choices["channels"]["value"] == 1
    assert choices["augment_strength"]["value"] == 0.625  # x0.5 for 24 px images, x1.25 for 16 cases
    assert choices["final"]["value"] is False and "--final is worth it" in choices["final"]["reason"]
    assert choices["batch_size"]["value"] == 8  # 16 training cases: enough steps per epoch
    assert choices["budget"]["value"] is None  # no default budget: wall-clock time decides nothing
    assert choices["epochs"]["value"] == 150  # 50 x sqrt(4000 / 16), at most 150
    assert choices["patch_size"]["value"] is None and "budget_s" not in plan


def test_options_given_are_kept_and_marked(tmp_path, make_folders):
    data = make_folders(tmp_path / "d", n_per_class=10, size=24)
    cfg = TrainConfig(image_size=16, epochs=3, batch_size=4, final=False)
    plan = make_plan(data, cfg, get_model_info("cnn-small"), probe=True)
    c = plan["choices"]
    for name, value in (("image_size", 16), ("epochs", 3), ("batch_size", 4), ("final", False)):
        assert c[name] == {"value": value, "source": "option", "reason": "given explicitly"}
    assert c["budget"]["value"] is None and "the epoch count comes from the data" in c["budget"]["reason"]
    assert plan["probe"]["decides"] == "nothing"  # no timing in the plan


def test_plan_command_prints_the_table_and_writes_json(tmp_path, make_folders):
    data = make_folders(tmp_path / "d", n_per_class=10, size=24)
    out = tmp_path / "plans.json"
    result = CliRunner().invoke(app, ["plan", str(data), "--no-probe", "-o", str(out), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "--image-size" in result.output and "never upsampled" in result.output
    saved = json.loads(out.read_text())
    assert saved["choices"]["batch_size"]["source"] == "option"


def test_final_refits_and_never_reports_val_for_the_refit_model(tmp_path, make_folders, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=10, size=24)
    run = medlens.train(data, tmp_path / "run", epochs=2, final=True, progress=False)
    plan = json.loads((run / "plans.json").read_text())
    assert plan["choices"]["final"] == {"value": True, "source": "option", "reason": "given explicitly"}
    facts = json.loads((run / "train.json").read_text())
    assert facts["final"]["refit_on"] == "train+val" and 1 <= facts["final"]["epochs"] <= 2
    assert facts["n_images"]["val"] == 0 and facts["n_images"]["train"] == 20  # val became training data
    summary = json.loads((run / "summary.json").read_text())
    assert summary["evaluated_model"] == "selection" and summary["split"] == "val"
    assert "no held-out score" in summary["final"]["note"]
    assert (run / "selection" / "model.pt").is_file() and (run / "selection" / "summary.json").is_file()
    with pytest.raises(MedlensError, match="refit on train \\+ val \\(--final\\)"):
        medlens.evaluate(run, split="val", progress=False)


def test_final_with_a_test_split_scores_the_refit_model_on_test(tmp_path, make_folders, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=12, size=24, split_level=True)
    run = medlens.train(data, tmp_path / "run", epochs=1, final=True, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["split"] == "test" and summary["n_cases"] == 6 and "evaluated_model" not in summary
    selection = json.loads((run / "selection" / "summary.json").read_text())
    assert selection["split"] == "val"


def test_no_plan_keeps_the_fixed_defaults(tmp_path, make_folders, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=8, size=24)
    run = medlens.train(data, tmp_path / "run", plan=False, epochs=1, image_size=16, progress=False)
    saved = (run / "config.yaml").read_text()
    assert "batch_size: 32" in saved and "final: false" in saved and not (run / "plans.json").exists()


def test_levers_train(tmp_path, make_folders, one_thread):
    data = make_folders(tmp_path / "d", n_per_class=8, size=24)
    plain = medlens.train(data, tmp_path / "p", epochs=2, final=False, batch_size=4, progress=False)
    ema = medlens.train(data, tmp_path / "e", epochs=2, final=False, batch_size=4, ema=True, progress=False)
    a, b = (medlens.load_run(r).model.state_dict() for r in (plain, ema))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the averaged weights were exported
    medlens.train(data, tmp_path / "m", epochs=2, final=False, mixup=0.2, progressive=True, progress=False)
    with pytest.raises(MedlensError, match="apply to classification"):
        TrainConfig(task="segmentation", model="unet", mixup=0.2)


def test_retarget_stretches_and_compresses_one_cycle():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=100, pct_start=0.25)
    for _ in range(10):
        opt.step()
        sched.step()

    trainer = type("Trainer", (), {})()
    trainer.lr_scheduler_configs = [type("C", (), {"scheduler": sched})()]
    assert _retarget(trainer, 60)
    lrs = []
    for _ in range(49):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) == pytest.approx(1e-2, rel=1e-3)  # the peak moved to step 15 and was reached
    assert lrs[-1] < 1e-5  # the cycle ended at step 60, not 100
    assert not _retarget(trainer, 40)  # already past it: left alone


def test_one_cycle_is_not_stopped_early_unless_asked():
    assert TrainConfig().resolved_patience is None  # a cycle stopped half-way keeps a high learning rate
    assert TrainConfig(scheduler="cosine").resolved_patience == 8
    assert TrainConfig(patience=3).resolved_patience == 3
