"""`medlens train --resume`: continue an interrupted run only with the options it was started with.

A new run writes its resolved config to ``<RUN_DIR>.partial/resume.json`` before any data is prepared. On
``--resume`` the given config is compared with it, field by field, and a difference that would change the
network, the data, the optimisation or the random streams is refused with one line (a ``MedlensError``),
leaving the partial folder as it was.

May differ on resume (``MAY_CHANGE``):

* ``epochs``: extend (or shorten) an interrupted run. A one-cycle learning-rate schedule is planned for the
  epochs the run was started with, so it cannot be extended (refused with its own message); cosine and
  constant schedules can.
* ``max_minutes``: the time limit; Lightning's timer counts the time the interrupted run already trained.
* ``workers``: decoding threads only.
* ``accelerator``, ``devices``, ``num_nodes``, ``strategy``: where it runs (e.g. resuming on another machine).
  The run continues from the same weights and optimiser state, but bit-identical continuation is only
  promised on the same hardware and device count.

Everything else is compared. ``patience`` too: early stopping restores its patience from the checkpoint, so a
different ``--patience`` would be silently ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medlens.errors import MedlensError
from medlens.io.guard import load_torch_file
from medlens.models.registry import get_model_info
from medlens.utils.files import atomic_write_text

RESUME_FILE = "resume.json"
#: Config fields that may change on ``--resume`` (see the module docstring); every other field must match.
MAY_CHANGE = ("epochs", "max_minutes", "workers", "accelerator", "devices", "num_nodes", "strategy")


def record_or_check(partial: Path, cfg, info, *, resume: bool, run: Path | str) -> None:
    """A new run: save its config in ``partial``. A resumed one: refuse options that differ from it."""
    if resume:
        check_resume(partial, cfg, info, run=run)
    else:
        save_resume_config(partial, cfg)


def save_resume_config(partial: Path, cfg) -> Path:
    return atomic_write_text(
        Path(partial) / RESUME_FILE, json.dumps({"config": _plain(cfg.to_dict())}, indent=2) + "\n"
    )


def check_resume(partial: Path, cfg, info, *, run: Path | str) -> None:
    """Raise a one-line MedlensError naming each compared field whose value differs from the stored one."""
    path = Path(partial) / RESUME_FILE
    if not path.is_file():  # a partial run written before medlens saved resume.json: nothing to compare with
        load_checkpoint(Path(partial) / "checkpoints" / "last.ckpt", run=run)
        return
    try:
        stored = json.loads(path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MedlensError(
            f"cannot resume {run}: {path} is unreadable ({err}); start a new run (-o)"
        ) from err
    given = _plain(cfg.to_dict())
    old, new = _effective(stored, _model_info(stored.get("model"), info, cfg.model)), _effective(given, info)
    diffs = [
        f"{k} {_show(old[k])}, not {_show(new[k])}"  # fields a newer medlens added are not in ``old``
        for k in new
        if k in old and k not in MAY_CHANGE and old[k] != new[k]
    ]
    if diffs:
        raise MedlensError(
            f"cannot resume {run}: it was started with {', and '.join(diffs)}; "
            "resume with the same options or start a new run (-o)"
        )
    # the options first (they explain most refusals), then the checkpoint the run would continue from
    ckpt = load_checkpoint(Path(partial) / "checkpoints" / "last.ckpt", run=run)
    planned = stored.get("epochs")
    if isinstance(planned, int) and isinstance(cfg.epochs, int) and cfg.epochs > planned and _one_cycle(ckpt):
        raise MedlensError(
            f"cannot resume {run} with --epochs {cfg.epochs}: its one-cycle learning-rate "
            f"schedule was planned for {planned} epochs; resume with --epochs {planned} or "
            "fewer, or start a new run (-o)"
        )


def _effective(values: dict[str, Any], info) -> dict[str, Any]:
    """Fields as the run resolves them: an unset image size or channel count is the model's default."""
    out = dict(values)
    if out.get("image_size") is None and getattr(info, "default_size", None):
        out["image_size"] = info.default_size
    if out.get("channels") is None and getattr(info, "channels", None):
        out["channels"] = info.channels
    return out


def _model_info(name: str | None, info, given_name: str):
    """The registry entry of the stored model (its defaults resolve the stored config's unset fields)."""
    if name == given_name:
        return info

    try:
        return get_model_info(name)
    except Exception:  # a model this medlens no longer has: compare the stored values as written
        return None


def load_checkpoint(path: Path, *, run: Path | str) -> dict[str, Any]:
    """The checkpoint ``--resume`` continues from, loaded weights-only (it never unpickles code).

    Lightning would otherwise meet a damaged file first, deep in ``trainer.fit``: an ``OSError`` for a
    truncated zip, torch's advice to load with ``weights_only=False`` for pickled objects, and a bare
    "Aborted." for an empty file (click's answer to the ``EOFError``).

    Raises:
        MedlensError: one line naming the file, what is wrong with it and how to start again.
    """
    path = Path(path)
    try:
        ckpt = load_torch_file(path, what="checkpoint")
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise MedlensError(f"checkpoint {path} is not a training checkpoint (it holds no state_dict)")
    except MedlensError as err:
        partial = path.parent.parent
        raise MedlensError(
            f"cannot resume {run}: its checkpoint {path} {_damage(path, err)}; run the same command without "
            f"--resume to start again (that discards {partial.name}), or delete {partial}"
        ) from err
    return ckpt


def _damage(path: Path, err: MedlensError) -> str:
    """What is wrong with a checkpoint, from :func:`load_torch_file`'s message (less its advice for
    model files)."""
    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
    except OSError:
        return "cannot be read"
    text = str(err)
    if "Python objects" in text:
        return "holds pickled Python objects besides the weights (medlens never unpickles code)"
    for prefix in (f"checkpoint {path} ", f"{path} "):
        text = text.removeprefix(prefix)
    text = text.split("; ")[0]
    if "weights_only" in text:  # torch's advice to unpickle: never repeated
        return "is damaged"
    return text.replace("PyTorch state dict", "PyTorch checkpoint")


def _one_cycle(ckpt: dict[str, Any]) -> bool:
    """Whether the checkpoint's learning-rate scheduler is a OneCycleLR (it cannot step past its total)."""
    return any(isinstance(s, dict) and "total_steps" in s for s in ckpt.get("lr_schedulers") or [])


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples → lists), so stored and given configs compare alike."""
    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    if value is None:
        return "(default)"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={_show(v)}" for k, v in value.items()) or "(none)"
    return str(value)
