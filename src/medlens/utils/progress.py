"""Progress bars (rich) that disappear with ``--quiet`` or when output is not a terminal-friendly stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

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
