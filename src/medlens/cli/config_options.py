"""The ``train`` / ``plan`` options generated from the fields of TrainConfig, and the conversion of
their command-line values to field values."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any

import typer

from medlens.errors import MedlensError
from medlens.training.config import TrainConfig


def _config_options(cls: type) -> list[tuple[Any, inspect.Parameter]]:
    """A keyword parameter holding a ``typer.Option`` for each field of the dataclass ``cls``, from the
    field's metadata: ``help``, ``option`` (names; default ``--field-name``, ``--name/--no-name`` for a bool),
    ``metavar``, ``panel``; ``cli=False`` keeps a field config-only. The default is the field's own, so
    ``--help`` shows the real one (a flag's as on or off). A list field is a comma-separated option, a
    mapping a repeatable KEY=VALUE one."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", True) is False:
            continue
        kind = _field_type(hints[f.name])
        names = f.metadata.get("option") or f"--{f.name.replace('_', '-')}"
        names = (names,) if isinstance(names, str) else tuple(names)
        annotation, default, shown = kind, f.default, True
        if kind is bool:
            if not any("/" in n for n in names):
                names = (f"{names[0]}/--no-{names[0].removeprefix('--')}", *names[1:])
            if f.default is not None:  # "on", not the width of "no-freeze-backbone", at 80 columns
                shown = "on" if f.default else "off"
        elif typing.get_origin(kind) is list:
            annotation = str
            default = None if f.default is None else ",".join(map(str, f.default))
        elif typing.get_origin(kind) is dict:
            annotation, default = list[str], None
        option = typer.Option(
            default,
            *names,
            help=f.metadata["help"],
            metavar=f.metadata.get("metavar"),
            rich_help_panel=f.metadata.get("panel"),
            show_default=shown,
        )
        kw = inspect.Parameter.KEYWORD_ONLY
        out.append((f, inspect.Parameter(f.name, kw, default=option, annotation=annotation | None)))
    return out


def _field_type(hint: Any) -> Any:
    """``int | None`` → ``int``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else hint


def _with_config_options(cls: type):
    """Give a command one option per field of ``cls`` (see :func:`_config_options`), placed after its
    ``config`` parameter. The command receives ``changes``: only the options given on the command line,
    converted to field values, so an option left out never overrides the config file."""

    def decorate(func):
        fields = _config_options(cls)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.name != "changes"
        ]
        at = next(i for i, p in enumerate(own) if p.name == "config") + 1
        ctx = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        params = [*own[:at], *(p for _, p in fields), *own[at:], ctx]

        def command(ctx: typer.Context, **kwargs: Any) -> None:
            changes = {}
            for f, _ in fields:
                value = kwargs.pop(f.name)
                source = ctx.get_parameter_source(f.name)
                if source is not None and source.name != "DEFAULT":
                    changes[f.name] = _option_value(f, value)
            func(changes=changes, **kwargs)

        command.__name__, command.__qualname__ = func.__name__, func.__qualname__
        command.__doc__, command.__module__ = func.__doc__, func.__module__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command

    return decorate


def _option_value(f: Any, value: Any) -> Any:
    """A command-line value as the config field wants it: "96,96,32" → [96, 96, 32], KEY=VALUE → a dict."""
    option = f"--{f.name.replace('_', '-')}"
    if isinstance(f.metadata.get("option"), str):
        option = f.metadata["option"]
    kind = _field_type(typing.get_type_hints(TrainConfig)[f.name])
    if typing.get_origin(kind) is list:
        return _numbers(value, typing.get_args(kind)[0], option)
    if typing.get_origin(kind) is dict:
        return _model_args(value)
    return value


def _numbers(text: str | None, kind, option: str) -> list | None:
    """ "96,96,32" → [96, 96, 32]."""
    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise MedlensError(f"{option} needs comma-separated numbers like 96,96,32, got {text!r}") from err


def _model_args(items: list[str] | None) -> dict | None:
    """KEY=VALUE strings → a dict; VALUE is read as YAML, and "a,b,c" as a list (channels=16,32,64)."""
    if not items:
        return None
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedlensError(f"--model-arg needs KEY=VALUE, e.g. channels=16,32,64; got {item!r}")
        text = f"[{value}]" if "," in value and not value.strip().startswith("[") else value
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise MedlensError(f"--model-arg {item!r}: cannot read the value ({err})") from err
    return out
