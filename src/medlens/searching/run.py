"""`medlens search`: hyperparameter search over TrainConfig fields with Optuna.

A grid (``GridSampler``, the full Cartesian product) or ``trials`` TPE trials (``TPESampler`` over
:func:`~medlens.searching.space.tpe_space`), both with a ``MedianPruner`` fed each epoch's validation
metric through :func:`medlens.utils.progress.listening`. The validation split is carved once and saved as
``OUT/manifest.csv``, the source of every trial, so all trials are scored on the same cases. Worker processes
(``jobs``) share one Optuna RDB storage (SQLite ``OUT/study.db`` by default) and coordinate through it.

Training is the public ``medlens.train`` (the pipeline layer is a sibling of this one, reached through the
root package's lazy API, as ``medlens.serving.jobs`` does).
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from pathlib import Path
from shlex import quote
from typing import Any

from medlens.data.ingest import ingest
from medlens.data.splits import carve_validation
from medlens.errors import MedlensError
from medlens.io.guard import first_line
from medlens.searching.space import base_config, check_grid, grid_size, parse_budget, tpe_space
from medlens.training.config import TrainConfig
from medlens.utils.files import check_output_path
from medlens.utils.progress import listening

__all__ = ["search"]


def search(
    source: str | Path,
    out: str | Path,
    *,
    grid: str | dict[str, list] | None = None,
    trials: int | None = None,
    jobs: int = 1,
    budget: str | float | None = None,
    storage: str | None = None,
    test: str | Path | None = None,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    config: str | Path | None = None,
    prune: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Search training options on ``source``; write ``out`` and return the contents of ``out/search.json``.

    Args:
        source: a labelled dataset (anything ``medlens train`` reads).
        out: a new folder: manifest.csv (the split every trial used), trials/trial-<n>/ (one run each),
            results.csv, best.yaml, search.json, parallel_coordinates.png, importance.png, study.db.
        grid: ``"dropout=0,0.1 lr=1e-4,1e-3"`` (or a dict name → values): every combination, once.
        trials: instead of ``grid``, this many TPE trials over lr, weight_decay, dropout (and momentum with
            ``optimizer: sgd``).
        jobs: worker processes training trials side by side.
        budget: total wall-clock limit ("90s", "30m", "2h" or seconds); no new trial starts after it and each
            trial's ``max_minutes`` is the time left.
        storage: Optuna database URL (default ``sqlite:///OUT/study.db``), e.g. ``postgresql://u@host/db``.
        test: a labelled source the search never saw; the best trial's run is evaluated on it.
        seed: seed of the sampler and (unless ``overrides`` sets one) of training and the split.
        overrides: TrainConfig fields applied to every trial, e.g. ``{"epochs": 2, "model": "cnn-small"}``.
        config: a training YAML config the overrides apply to.
        prune: stop unpromising trials early (median rule on the per-epoch validation metric).
        progress: print one line per finished trial.

    Raises:
        MedlensError: both or neither of grid and trials, an unknown option or bad value, a bad budget or
            storage URL, an existing ``out``, or no trial completed.
    """
    import optuna

    if (grid is None) == (trials is None):
        raise MedlensError("give exactly one of --grid (every combination) or --trials N (TPE sampling)")
    space = check_grid(grid) if grid is not None else None
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise MedlensError(f"--trials must be a positive whole number, got {trials!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise MedlensError(f"--jobs must be at least 1, got {jobs!r}")
    budget_s = parse_budget(budget)
    base = base_config(config, overrides or {}, seed, space)
    monitor = base.resolved_monitor
    out = check_output_path(out, sources=[source], overwrite=False, what="search folder")
    url = storage or f"sqlite:///{out / 'study.db'}"
    shown_url = _mask(url)

    started = time.time()
    deadline = started + budget_s if budget_s else None
    manifest = carve_validation(ingest(source), base.val_fraction or 0.2, seed=base.seed)
    out.mkdir(parents=True)
    manifest_csv = manifest.save(out / "manifest.csv")
    name = f"medlens-search-{uuid.uuid4().hex[:12]}"
    plan = {
        "manifest": str(manifest_csv),
        "out": str(out),
        "storage": url,
        "study": name,
        "grid": space,
        "space": None if space else tpe_space(base.optimizer),
        "seed": seed,
        "base": base.to_dict(),
        "deadline": deadline,
        "prune": prune,
        "progress": progress,
        "threads": None,
    }
    try:
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial: our line, not its traceback
        optuna.create_study(
            storage=_storage(url),
            study_name=name,
            direction="maximize",
            sampler=_sampler(plan, 0),
            pruner=_pruner(plan),
        )
    except Exception as err:  # a wrong URL, a missing database driver, a refused connection
        shutil.rmtree(out, ignore_errors=True)
        raise MedlensError(f"cannot open --storage {shown_url}: {first_line(err)}") from err

    total = grid_size(space) if space else int(trials)
    shares = [s for s in (total // jobs + (i < total % jobs) for i in range(jobs)) if s]
    _run_workers(plan, shares)

    study = optuna.load_study(study_name=name, storage=_storage(url))
    return _finish(study, plan, source, out, base, monitor, test, budget_s, started, shown_url, len(shares))


# -- options ------------------------------------------------------------------------------------------------
def _mask(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError as err:
        raise MedlensError(
            f"--storage must be a database URL like sqlite:///study.db or postgresql://user@host/db, "
            f"got {url!r}"
        ) from err


def _storage(url: str):
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def _sampler(plan: dict, worker: int):
    import optuna

    if plan["grid"]:
        return optuna.samplers.GridSampler(plan["grid"], seed=plan["seed"])
    # each worker its own stream: the same seed everywhere would propose the same first trials
    return optuna.samplers.TPESampler(seed=plan["seed"] + worker, n_startup_trials=5)


def _pruner(plan: dict):
    import optuna

    if not plan["prune"]:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=3)


# -- workers ------------------------------------------------------------------------------------------------
def _run_workers(plan: dict, shares: list[int]) -> None:
    """Run the trials: in this process for one worker, else in spawned processes sharing the storage."""
    if len(shares) == 1:
        _work(plan, 0, shares[0])
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    plan = {**plan, "threads": max(1, (os.cpu_count() or 1) // len(shares))}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(shares), mp_context=context) as pool:
        futures = [pool.submit(_work, plan, i, n) for i, n in enumerate(shares)]
        errors = []
        for future in futures:
            try:
                future.result()
            except Exception as err:
                errors.append(err)
    if errors:
        raise MedlensError(f"a search worker stopped: {first_line(errors[0])}") from errors[0]


def _work(plan: dict, worker: int, n_trials: int) -> None:
    """One worker: ``study.optimize`` for ``n_trials`` trials or until the deadline."""
    import optuna

    if plan["threads"]:
        import torch

        torch.set_num_threads(plan["threads"])
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial: our line, not its traceback
    study = optuna.load_study(
        study_name=plan["study"],
        storage=_storage(plan["storage"]),
        sampler=_sampler(plan, worker),
        pruner=_pruner(plan),
    )
    timeout = None if plan["deadline"] is None else plan["deadline"] - time.time()
    if timeout is not None and timeout <= 1:
        return
    study.optimize(
        lambda trial: _objective(trial, plan),
        n_trials=n_trials,
        timeout=timeout,
        catch=(Exception,),
        callbacks=[_echo] if plan["progress"] else None,
        gc_after_trial=True,
    )


def _echo(study, trial) -> None:
    value = f" {trial.value:.4f}" if trial.value is not None else ""
    error = f" ({trial.user_attrs['error']})" if trial.user_attrs.get("error") else ""
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    )
    print(f"trial {trial.number}: {trial.state.name.lower()}{value}  [{params}]{error}", flush=True)


def _objective(trial, plan: dict) -> float:
    import optuna

    import medlens

    if plan["grid"]:
        params = {name: trial.suggest_categorical(name, values) for name, values in plan["grid"].items()}
    else:
        params = {
            name: trial.suggest_float(name, low, high, log=log)
            for name, (low, high, log) in plan["space"].items()
        }
    base = plan["base"]
    changes = dict(params)
    if plan["deadline"] is not None:  # training stops at the budget's end (then evaluates its best epoch)
        left = max(0.05, (plan["deadline"] - time.time()) / 60)
        changes["max_minutes"] = min(left, base["max_minutes"] or math.inf)
    cfg = TrainConfig.from_dict({**base, **changes})
    monitor = cfg.resolved_monitor
    run = Path(plan["out"]) / "trials" / f"trial-{trial.number}"
    trial.set_user_attr("run", str(run))

    def listen(stage: str, info: dict) -> None:
        if stage != "train" or info.get(monitor) is None:
            return
        epoch = int(info.get("epoch", 0))
        trial.report(float(info[monitor]), step=epoch)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    t0 = time.perf_counter()
    try:
        with listening(listen):
            medlens.train(plan["manifest"], run, config=cfg, progress=False)
    except BaseException as err:
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
        if not isinstance(err, optuna.TrialPruned):
            trial.set_user_attr("error", first_line(err))
        shutil.rmtree(run.with_name(run.name + ".partial"), ignore_errors=True)
        raise
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
    stats = json.loads((run / "train.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    trial.set_user_attr("epochs", stats.get("epochs_run"))
    trial.set_user_attr("metrics", {k: m.get("value") for k, m in summary.get("metrics", {}).items()})
    best = stats.get("best_score")
    if best is None:
        raise MedlensError(f"trial {trial.number}: training logged no {monitor}")
    return float(best)


# -- results ------------------------------------------------------------------------------------------------
def _why_none(trials, errors: list[str]) -> str:
    """Why no trial completed: the first error, every trial pruned, or no time for one."""
    if errors:
        return f": {len(errors)} of {len(trials)} trial(s) failed, the first with: {errors[0]}"
    if trials and all(t.state.name == "PRUNED" for t in trials):
        return f": the pruner stopped all {len(trials)} trial(s) early (search again with --no-prune)"
    return " (raise --budget)"


def _finish(study, plan, source, out: Path, base: TrainConfig, monitor, test, budget_s, started, url, jobs):
    import optuna
    import pandas as pd
    import yaml

    from medlens.searching import plots

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    names = list(plan["grid"] or plan["space"])
    rows = [
        {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            **{name: t.params.get(name) for name in names},
            "seconds": t.user_attrs.get("seconds"),
            "epochs": t.user_attrs.get("epochs", t.user_attrs.get("pruned_at_epoch")),
            "run": t.user_attrs.get("run") if t.state == optuna.trial.TrialState.COMPLETE else None,
            "error": t.user_attrs.get("error"),
        }
        for t in trials
    ]
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    errors = [t.user_attrs["error"] for t in trials if t.user_attrs.get("error")]
    if not complete:
        raise MedlensError(
            f"no trial of the search completed{_why_none(trials, errors)}; see {out / 'results.csv'}"
        )

    best = study.best_trial
    best_run = Path(best.user_attrs["run"])
    cfg = yaml.safe_load((best_run / "config.yaml").read_text())
    cfg["max_minutes"] = base.max_minutes  # the search's budget is not part of the configuration
    best_yaml = out / "best.yaml"
    best_yaml.write_text(yaml.safe_dump(cfg, sort_keys=False))

    plots.parallel_coordinates(
        [{"value": t.value, "params": t.params} for t in complete],
        names,
        monitor,
        out / "parallel_coordinates.png",
    )
    importances, note = None, ""
    varied = [n for n in names if len({t.params.get(n) for t in complete}) > 1]
    if len(complete) >= 2 and varied:
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=plan["seed"])
            found = optuna.importance.get_param_importances(study, evaluator=evaluator, params=varied)
            importances = {k: round(float(v), 4) for k, v in found.items()}
        except Exception as err:  # too few distinct trials for the forest
            note = f"parameter importance not computed: {first_line(err)}"
    plots.importance(importances, out / "importance.png", note)

    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    result: dict[str, Any] = {
        "source": str(source),
        "manifest": "manifest.csv",
        "sampler": "grid" if plan["grid"] else "tpe",
        "pruner": "median" if plan["prune"] else "none",
        "grid": plan["grid"],
        "space": None if plan["grid"] else {k: list(v) for k, v in plan["space"].items()},
        "overrides": {k: v for k, v in base.to_dict().items() if k not in names},
        "monitor": monitor,
        "n_trials": len(trials),
        "states": states,
        "jobs": jobs,
        "seed": plan["seed"],
        "budget_seconds": budget_s,
        "elapsed_seconds": round(time.time() - started, 1),
        "storage": url,
        "study_name": plan["study"],
        "best": {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "run": str(best_run),
            "metrics": best.user_attrs.get("metrics", {}),
        },
        "importance": importances,
        "failed": {"n": len(errors), "first_error": errors[0]} if errors else None,
        "best_config": "best.yaml",
        "reproduce": f"medlens train {quote(str(source))} --config {quote(str(best_yaml))} -o RUN",
        "test": None,
    }
    if test is not None:
        import medlens

        summary = medlens.evaluate(best_run, data=test, out=out / "test-eval", progress=False)
        result["test"] = {
            "data": str(test),
            "split": summary.get("split"),
            "n_cases": summary.get("n_cases"),
            "metrics": {k: m.get("value") for k, m in summary.get("metrics", {}).items()},
            "report": str(out / "test-eval" / "report.html"),
        }
    (out / "search.json").write_text(json.dumps(result, indent=2, default=str))
    return result
