"""The `medlens` command: a thin Typer layer over the public functions.

Heavy libraries load only when a command runs. A MedlensError (user mistake, broken input) prints one
line and exits with code 2, without a traceback.

Each command module registers its commands on the one ``app`` (medlens.cli.app) when imported; all are
imported here, and the commands then put back in the order ``medlens --help`` lists them.
"""

from __future__ import annotations

from medlens.cli import data_cmds, eval_cmds, predict_cmds, serve_cmd, train_cmds
from medlens.cli.app import app, main

__all__ = ["app", "main"]

_ORDER = (
    "ingest",
    "audit",
    "models",
    "summary",
    "train",
    "plan",
    "curve",
    "evaluate",
    "calibrate",
    "predict",
    "explain",
    "triage",
    "mark-read",
    "compare",
    "serve",
    "search",
    "demo",
)
_MODULES = (data_cmds, train_cmds, eval_cmds, predict_cmds, serve_cmd)  # imported for their commands


def _rank(command) -> int:
    name = command.name or command.callback.__name__.replace("_", "-")
    return _ORDER.index(name) if name in _ORDER else len(_ORDER)  # a new command goes last


app.registered_commands.sort(key=_rank)
