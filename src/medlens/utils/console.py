"""The one rich console of every command: the terminal's width on a terminal, full lines anywhere else.

rich sizes its output to the terminal; when stdout is a pipe or a file it falls back to 80 columns and
wraps or cuts every table to fit (``medlens models | grep``, ``medlens predict ... > out.txt``). Piped
output is read by programs and people searching it, so there it gets lines as long as their content.
"""

from __future__ import annotations

import os

from rich.console import Console

#: Columns of piped output: wider than any line medlens prints, so nothing is wrapped or cut.
PIPE_WIDTH = 10_000


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that never cuts a line when the stream is not a terminal.

    Args:
        stderr: write to stderr instead of stdout.

    Returns:
        A ``rich.console.Console``: the terminal's width on a terminal (or ``COLUMNS`` when set), else
        :data:`PIPE_WIDTH` columns.
    """
    out = Console(stderr=stderr)
    if out.is_terminal or os.environ.get("COLUMNS"):
        return out
    return Console(stderr=stderr, width=PIPE_WIDTH)
