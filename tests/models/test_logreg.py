"""Our logistic regression against scikit-learn's on real 8x8 digits (bundled with scikit-learn, offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from medlens.models import create_model

C = 0.1  # sklearn's inverse regularisation strength (strong enough that the optimum is well defined)


pytestmark = pytest.mark.usefixtures("one_thread")


def _digits(classes: tuple[int, ...] | None = None):
    x, y = load_digits(return_X_y=True)
    if classes is not None:
        keep = np.isin(y, classes)
        x, y = x[keep], np.searchsorted(classes, y[keep])
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_tr)
    return scaler.transform(x_tr), scaler.transform(x_te), y_tr, y_te


def _train_ours(x_tr: np.ndarray, y_tr: np.ndarray, num_classes: int) -> torch.nn.Module:
    """Full-batch L-BFGS on sklearn's objective: mean cross-entropy + ||W||^2 / (2 C n), bias unpenalised."""
    torch.manual_seed(0)
    model = create_model("logreg", num_classes=num_classes, in_channels=1, image_size=8).train()
    x = torch.tensor(x_tr, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(y_tr)
    weight = model.head.linear.weight
    opt = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=100, tolerance_grad=1e-6, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) + (weight**2).sum() / (2 * C * len(y))
        loss.backward()
        return loss

    opt.step(closure)
    return model.eval()


def _compare(classes: tuple[int, ...] | None, num_classes: int) -> tuple[float, float, float]:
    x_tr, x_te, y_tr, y_te = _digits(classes)
    ref = LogisticRegression(C=C, max_iter=2000).fit(x_tr, y_tr)
    model = _train_ours(x_tr, y_tr, num_classes)
    with torch.no_grad():
        probs = model(torch.tensor(x_te, dtype=torch.float32).reshape(-1, 1, 8, 8)).softmax(1).numpy()
    ours = float((probs.argmax(1) == y_te).mean())
    theirs = float(ref.score(x_te, y_te))
    return ours, theirs, float(np.abs(probs - ref.predict_proba(x_te)).max())


def test_multiclass_logreg_matches_sklearn_on_digits():
    ours, theirs, prob_gap = _compare(None, 10)
    assert theirs > 0.9
    assert abs(ours - theirs) <= 0.02
    assert prob_gap < 0.05  # the same convex objective: the same probabilities, not only the same accuracy


def test_binary_logreg_matches_sklearn_on_3_vs_8():
    ours, theirs, prob_gap = _compare((3, 8), 2)
    assert theirs > 0.9
    assert abs(ours - theirs) <= 0.02
    assert prob_gap < 0.05
