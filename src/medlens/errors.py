"""User-facing errors.

A :class:`MedlensError` is a user mistake or a broken input: the CLI prints its message as one line and exits
with code 2, without a traceback. Messages say what is wrong, which file, and what to do.
"""

from __future__ import annotations

import difflib


class MedlensError(ValueError):
    """A problem the user can fix (bad argument, unreadable source, missing run directory)."""


class UnreadableImageError(MedlensError):
    """One image file cannot be decoded (or is refused by the read guard); datasets report and skip it.

    Attributes:
        path: the file.
        reason: one line saying what is wrong with it.
        kind: a short class of the failure (``truncated``, ``too-large``, ``non-finite``, ``zero-byte``,
            ``missing``, ``undecodable``, ...) for summaries; derived from the reason when not given.
        declared_bytes: for ``too-large``, the decoded size the header declares.
    """

    def __init__(self, path: str, reason: str, kind: str | None = None, declared_bytes: float | None = None):
        self.path = str(path)
        self.reason = reason
        self.kind = kind or reason_kind(reason)
        self.declared_bytes = declared_bytes
        super().__init__(f"cannot read image {path}: {reason}")

    def record(self, **extra) -> dict:
        """The ``{"path", "reason", "kind"}`` record a dataset command lists for a skipped file."""
        return {"path": self.path, "reason": self.reason, "kind": self.kind, **extra}


def reason_kind(reason: str) -> str:
    """Short kind of a failure from its reason text (zero-byte, truncated, missing, ... else undecodable)."""
    text = reason.lower()
    for key, kind in (
        ("zero-byte", "zero-byte"),
        ("truncated", "truncated"),
        ("not found", "missing"),
        ("nan/inf", "non-finite"),
        ("limit per file", "too-large"),
        ("not an image", "non-image"),
    ):
        if key in text:
            return kind
    return "undecodable"


def did_you_mean(name: str, choices: list[str]) -> str:
    """Return a ' Did you mean X?' hint (or '') for an unknown ``name``."""

    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
