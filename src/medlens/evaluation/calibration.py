"""Whether probabilities mean what they say: calibration measures and temperature scaling.

Measures (all on the same cases, JSON-ready):

- ``ece``: expected calibration error of the top-class confidence, 10 equal-width bins (the classic
  Guo et al. 2017 definition; the value summary.json always had);
- ``ece_equal_mass``: the same with bins holding equal numbers of cases (less sensitive to empty bins);
- ``classwise_ece``: the mean over classes of the ECE of each class's own probability (Kull et al. 2019);
- ``brier``: binary tasks: mean (p_positive − y)²; multiclass: mean Σ_k (p_k − y_k)² (Brier 1950);
- ``nll``: mean negative log-likelihood of the true class (what temperature scaling minimises).

The binned ECE is biased upward at small n (noise alone puts cases off the diagonal), so its percentile
bootstrap interval sits above the truth too; :data:`ECE_CI_NOTE` says so wherever the interval is shown.

Temperature scaling (Guo et al. 2017) divides the network's scores by one scalar T > 0 fitted on the
validation split by LBFGS on the NLL: predictions (argmax) never change, only how sure the model says it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medlens.errors import MedlensError
from medlens.evaluation.metrics import calibration as equal_width_calibration

ECE_CI_NOTE = (
    "95 % CI: percentile bootstrap of the binned ECE; the binned estimate is biased upward at small n, "
    "so the whole interval tends to sit above the true calibration error"
)


def calibration_summary(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Every calibration measure plus the equal-width and equal-mass reliability bins.

    Args:
        y_true: true class index per case, shape (N,).
        probs: class probabilities, shape (N, C), rows summing to 1.
        n_bins: bins of the reliability curves.

    Returns:
        ``{"ece", "n_bins", "bins", "ece_equal_mass", "bins_equal_mass", "classwise_ece", "brier",
        "brier_definition", "nll", "n"}`` (``bins`` as :func:`medlens.evaluation.metrics.calibration`).
    """
    out = equal_width_calibration(y_true, probs, n_bins=n_bins)
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    out["ece_equal_mass"], out["bins_equal_mass"] = _equal_mass_ece(conf, correct, n_bins)
    out["classwise_ece"] = float(
        np.mean([_equal_width_ece(p[:, k], (y == k).astype(np.float64), n_bins) for k in range(p.shape[1])])
    )
    out["brier"], out["brier_definition"] = brier(y, p)
    out["nll"] = nll(y, p)
    out["n"] = len(y)
    out["ci_note"] = ECE_CI_NOTE
    return out


def brier(y_true: np.ndarray, probs: np.ndarray) -> tuple[float, str]:
    """The Brier score and its definition (binary: of the positive class; multiclass: summed over classes)."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - (y == 1)) ** 2)), "mean (p_positive - y)^2"
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(((p - onehot) ** 2).sum(axis=1))), "mean sum_k (p_k - y_k)^2"


def nll(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at 1e-12)."""
    y = np.asarray(y_true, dtype=np.int64)
    return float(-np.mean(np.log(np.clip(np.asarray(probs)[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, max_iter: int = 200) -> float:
    """The temperature T minimising the NLL of ``softmax(logits / T)`` (LBFGS on log T, so T stays > 0).

    Args:
        logits: the network's scores (N, C) (not probabilities).
        y_true: true class index per case (N,).
        max_iter: LBFGS iterations.
    """
    z = torch.tensor(np.array(logits, dtype=np.float64))
    y = torch.tensor(np.array(y_true, dtype=np.int64))
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise MedlensError(f"need logits (N, C) and N labels with N > 0; got {tuple(z.shape)} and {len(y)}")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t):
        raise MedlensError("temperature scaling did not converge (scores are not finite)")
    return t


def _equal_width_ece(score: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    bin_of = np.digitize(score, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], right=True)
    return _binned_gap(bin_of, score, outcome, n_bins)


def _binned_gap(bin_of: np.ndarray, score: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    s = np.bincount(bin_of, weights=score, minlength=n_bins)
    o = np.bincount(bin_of, weights=outcome, minlength=n_bins)
    return float(np.abs(o - s).sum() / len(score))


def _equal_mass_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[float, list[dict]]:
    """ECE over bins of (nearly) equal case counts; cases of one confidence value stay in one bin."""
    order = np.argsort(conf, kind="stable")
    n_bins = max(1, min(n_bins, len(conf)))
    bin_sorted = (np.arange(len(conf)) * n_bins) // len(conf)
    sorted_conf = conf[order]
    # ties across a bin edge join the lower bin, so a bin is a confidence interval
    first_of_value = np.searchsorted(sorted_conf, sorted_conf, side="left")
    bin_sorted = bin_sorted[first_of_value]
    bin_of = np.empty_like(bin_sorted)
    bin_of[order] = bin_sorted
    count = np.bincount(bin_of, minlength=n_bins)
    c_sum = np.bincount(bin_of, weights=conf, minlength=n_bins)
    a_sum = np.bincount(bin_of, weights=correct, minlength=n_bins)
    bins = [
        {
            "lower": float(conf[bin_of == b].min()),
            "upper": float(conf[bin_of == b].max()),
            "count": int(count[b]),
            "confidence": float(c_sum[b] / count[b]),
            "accuracy": float(a_sum[b] / count[b]),
        }
        for b in range(n_bins)
        if count[b]
    ]
    return float(np.abs(a_sum - c_sum).sum() / len(conf)), bins
