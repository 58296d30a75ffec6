"""One file of a batch that cannot be read costs that file only: the read boundary of every batch loop
(predict, evaluate, explain, triage, audit) turns whatever a broken file makes a decoder raise into an
:class:`~medlens.errors.UnreadableImageError` for that file's row.

The guard maps the failures it knows to clear reasons; a decoder failing some other way (pydicom raising
``ValueError`` on a malformed header value, say) is still the file's problem, not the batch's, and its row
says exactly what was raised (type and message), so a real bug is never hidden.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from medlens.errors import MedlensError, UnreadableImageError
from medlens.io.guard import first_line

T = TypeVar("T")


def unreadable(path: Any, err: Exception) -> UnreadableImageError:
    """``err``, raised while reading ``path``, as the file's UnreadableImageError (its reason for the row)."""
    if isinstance(err, UnreadableImageError):
        return err
    if isinstance(err, MedlensError):
        return UnreadableImageError(str(path), first_line(err))
    return UnreadableImageError(str(path), f"{type(err).__name__}: {first_line(err)}", kind="undecodable")


def read_guarded(path: Any, read: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``read(*args, **kwargs)`` for the file ``path``; any failure raises :class:`UnreadableImageError`.

    Raises:
        UnreadableImageError: the file cannot be read, with the reason (the exception's type and message
            when the reader did not say more).
    """
    try:
        return read(*args, **kwargs)
    except Exception as err:
        raise unreadable(path, err) from err


def reader_boundary(read: Callable[..., T]) -> Callable[..., T]:
    """Decorate a reader whose first argument is the file: what a decoder raises besides a MedlensError
    becomes the file's :class:`UnreadableImageError` (a MedlensError already says what is wrong)."""

    @functools.wraps(read)
    def guarded(path: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return read(path, *args, **kwargs)
        except MedlensError:
            raise
        except Exception as err:  # the read boundary: the file's reason, never the batch's
            raise unreadable(path, err) from err

    return guarded


def row_error(err: MedlensError) -> str:
    """The text of a batch row's ``error``: the reason of an unreadable file, else the one-line message."""
    return err.reason if isinstance(err, UnreadableImageError) else first_line(err)
