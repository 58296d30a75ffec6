"""User-facing errors.

A :class:`MedlensError` is a user mistake or a broken input: the CLI prints its message as one line and exits
with code 2, without a traceback. Messages say what is wrong, which file, and what to do.
"""

from __future__ import annotations


class MedlensError(ValueError):
    """A problem the user can fix (bad argument, unreadable source, missing run directory)."""


class UnreadableImageError(MedlensError):
    """One image file cannot be decoded; datasets report and skip it."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {path}: {reason}")


def did_you_mean(name: str, choices: list[str]) -> str:
    """Return a ' Did you mean X?' hint (or '') for an unknown ``name``."""
    import difflib

    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
