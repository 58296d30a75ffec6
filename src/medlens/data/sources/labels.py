"""Integer labels → class names (``label_names``), shared by the CSV, folder and npz adapters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from medlens.errors import MedlensError


def check_names(names: Sequence[str], where: str) -> list[str]:
    """Validate a list of class names: non-empty, distinct strings.

    Args:
        names: class names in label order (name of label 0 first).
        where: what the names came from, for error messages.
    """
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise MedlensError(f"label names from {where} must be a list of strings, got {names!r}")
    out = [str(n).strip() for n in names]
    if not out or any(not n for n in out):
        raise MedlensError(f"label names from {where} must be non-empty strings, got {list(names)!r}")
    dupes = sorted({n for n in out if out.count(n) > 1})
    if dupes:
        raise MedlensError(f"label names from {where} repeat {dupes[0]!r}; give each class one distinct name")
    return out


def name_labels(labels: Iterable[object], names: Sequence[str], where: str) -> list[str]:
    """Replace every integer label ``i`` by ``names[i]``.

    Args:
        labels: label values (ints or strings of ints).
        names: class names in label order.
        where: the source, named in error messages.

    Raises:
        MedlensError: a label that is not a whole number, or one without a name.
    """
    names = check_names(names, "label_names")
    out = []
    for value in labels:
        text = str(value).strip()
        try:
            index = int(text)
        except ValueError:
            raise MedlensError(
                f"label_names maps integer labels to names, but {where} has the label "
                f"{text!r}; leave label_names out for labels that are already names"
            ) from None
        if not 0 <= index < len(names):
            raise MedlensError(
                f"label {index} in {where} has no name: label_names gives {len(names)} names "
                f"{names}; give one name per label value, in order from 0"
            )
        out.append(names[index])
    return out
