"""Classification heads: map backbone features (N, F) to logits (N, num_classes)."""

from __future__ import annotations

from torch import nn

from medlens.errors import MedlensError

HEAD_KINDS = ("linear", "mlp")


def make_head(
    kind: str, in_features: int, num_classes: int, dropout: float = 0.0, hidden: int = 256
) -> nn.Module:
    """Build a classification head.

    Args:
        kind: "linear" (Dropout -> Linear) or "mlp" (Linear -> ReLU -> Dropout -> Linear).
        in_features: feature width coming from the backbone.
        num_classes: number of logits.
        dropout: dropout probability in [0, 1).
        hidden: hidden width of the "mlp" head.

    Returns:
        An ``nn.Sequential`` whose last module is the output ``nn.Linear``.
    """
    check_dropout(dropout)
    if kind == "linear":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
    raise MedlensError(f"unknown head {kind!r}: use one of {', '.join(HEAD_KINDS)}")


def check_dropout(dropout: float) -> None:
    """Raise a one-line error unless ``dropout`` is a probability in [0, 1)."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise MedlensError(f"dropout must be a number in [0, 1), got {dropout!r}")


def last_linear_name(head: nn.Module) -> str | None:
    """Dotted name (inside ``head``) of its last ``nn.Linear``; None when it has none."""
    names = [name for name, module in head.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None
