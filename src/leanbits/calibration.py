"""Likelihood and calibration of a classifier's probabilities: negative log-likelihood (NLL)
and expected calibration error (ECE), the measures claims 2 and 3 of the paper read
beside accuracy.

Both are computed on the common probability output of every head,
:meth:`leanbits.heads.Head.log_probs` (softmax: the softmax of the logits; llr: the
one-vs-rest probabilities ``sigmoid(L_k)`` renormalised to sum to 1; llr-code: the
posterior of the soft-decoding scores), so heads with different losses are compared on
one scale. NLL is the mean of ``-log p(y | x)``, from log-probabilities (no clamping).
ECE uses :data:`ECE_BINS` equal-width bins of the confidence ``max_k p_k``, bin ``b``
holding confidences in ``(b / B, (b + 1) / B]``::

    ECE = sum_b (n_b / N) * |accuracy_b - mean confidence_b|

where the prediction is the most probable class. :class:`Calibration` accumulates both
over batches; :func:`expected_calibration_error` is the one-shot form.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: number of equal-width confidence bins of the ECE
ECE_BINS = 15


def bin_index(confidence: Tensor, bins: int = ECE_BINS) -> Tensor:
    """The ECE bin of each confidence: ``b`` for a value in ``(b / bins, (b + 1) / bins]``
    (0 also falls in bin 0).

    Example:
        >>> bin_index(torch.tensor([0.0, 0.5, 0.51, 1.0]), bins=2).tolist()
        [0, 0, 1, 1]
    """
    return (torch.ceil(confidence.double() * bins).long() - 1).clamp_(0, bins - 1)


class Calibration:
    """Running NLL and ECE over batches of log-probabilities.

    Args:
        bins: number of equal-width confidence bins.

    Example:
        >>> c = Calibration()
        >>> c.update(torch.log(torch.tensor([[0.9, 0.1], [0.3, 0.7]])), torch.tensor([0, 0]))
        >>> round(c.nll(), 4), round(c.ece(), 4)
        (0.6547, 0.4)
    """

    def __init__(self, bins: int = ECE_BINS) -> None:
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be a positive integer, not {bins!r}")
        self.bins = bins
        self.count = torch.zeros(bins, dtype=torch.float64)
        self.conf_sum = torch.zeros(bins, dtype=torch.float64)
        self.correct_sum = torch.zeros(bins, dtype=torch.float64)
        self.nll_sum = 0.0
        self.n = 0

    def update(self, log_probs: Tensor, targets: Tensor) -> None:
        """Add a batch: ``log_probs`` ``[N, K]`` (rows are log of probabilities summing to
        1), ``targets`` int64 ``[N]``."""
        lp = log_probs.detach().double()
        self.nll_sum -= float(lp.gather(1, targets.view(-1, 1)).sum())
        conf, pred = lp.max(dim=1)
        conf = conf.exp()
        b = bin_index(conf, self.bins)
        self.count += torch.bincount(b, minlength=self.bins).double()
        self.conf_sum += torch.bincount(b, weights=conf, minlength=self.bins)
        self.correct_sum += torch.bincount(b, weights=(pred == targets).double(),
                                           minlength=self.bins)
        self.n += int(targets.shape[0])

    def nll(self) -> float:
        """Mean negative log-likelihood of the targets (NaN before any example)."""
        return self.nll_sum / self.n if self.n else math.nan

    def ece(self) -> float:
        """Expected calibration error (NaN before any example)."""
        if not self.n:
            return math.nan
        return float((self.conf_sum - self.correct_sum).abs().sum()) / self.n


def expected_calibration_error(probs: Tensor, targets: Tensor, bins: int = ECE_BINS) -> float:
    """ECE of probabilities ``probs`` ``[N, K]`` against ``targets`` ``[N]``.

    Example:
        >>> round(expected_calibration_error(torch.tensor([[0.9, 0.1], [0.3, 0.7]]),
        ...                                  torch.tensor([0, 0])), 6)
        0.4
    """
    c = Calibration(bins)
    c.update(torch.log(probs.double()), targets)
    return c.ece()
