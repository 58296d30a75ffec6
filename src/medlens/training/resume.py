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
    planned = stored.get("epochs")
    if (
        isinstance(planned, int)
        and isinstance(cfg.epochs, int)
        and cfg.epochs > planned
        and _one_cycle(Path(partial))
    ):
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


def _one_cycle(partial: Path) -> bool:
    """Whether the checkpoint's learning-rate scheduler is a OneCycleLR (it cannot step past its total)."""
    import torch  # deferred: torch is heavy; this module stays light

    try:
        ckpt = torch.load(
            partial / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True, mmap=True
        )
    except Exception as err:  # truncated or foreign file
        raise MedlensError(
            f"cannot resume from {partial}/checkpoints/last.ckpt: {err}; start a new run (-o)"
        ) from err
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
