"""Progress bars (rich) that disappear with ``--quiet`` or when output is not a terminal-friendly stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")


def track(
    items: Iterable[T], *, total: int | None = None, description: str = "Working", disable: bool = False
) -> Iterator[T]:
    """Yield ``items`` while showing a rich progress bar on stderr."""
    if disable:
        yield from items
        return

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


# -- listeners: where a long job reports its stage to something other than a terminal (the web app's jobs) --
Listener = Callable[[str, dict[str, Any]], None]
_LISTENERS: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener(stage, info)`` for every :func:`report` made inside the block (a job's progress row).
    The listener may raise to stop the work (a cancelled job): the exception leaves through ``report``."""
    _LISTENERS.append(listener)
    try:
        yield
    finally:
        _LISTENERS.remove(listener)


def report(stage: str, **info: Any) -> None:
    """Tell the listeners where long work stands, e.g. ``report("train", epoch=3, epochs=16, val_loss=0.2)``;
    free when nobody listens."""
    for listener in list(_LISTENERS):
        listener(stage, info)
