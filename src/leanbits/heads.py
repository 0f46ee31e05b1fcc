"""Output heads: how a network's last-layer outputs become a loss, class scores and probabilities.

Three heads are provided:

``softmax``
    K logits, cross-entropy on their softmax.
``llr``
    K outputs; output k is the log-likelihood ratio
    ``L_k = log P(y=k | x) / P(y != k | x)`` of the binary event "the class is k".
    Loss: the sum over classes of the binary cross-entropy of ``sigmoid(L_k)`` against the
    one-hot target. Scores are the LLRs themselves (argmax picks the class).
``llr-code``
    M outputs, one LLR per bit of the class codeword: ``L_m = log P(b_m=1 | x) / P(b_m=0 | x)``.
    A K x M 0/1 code matrix ``C`` gives each class its codeword (default: the
    ceil(log2 K)-bit binary code of the class index, most significant bit first).
    Loss: binary cross-entropy per bit. Decoding is maximum-likelihood soft decoding
    assuming independent bits: ``score_k = sum_m log sigmoid(s_km * L_m)`` with
    ``s_km = +1`` if ``C[k, m] == 1`` else ``-1``.

Sign convention (both LLR heads): a **positive** LLR means the event (class k, or bit = 1)
is **more likely** than its complement.

``llr_target`` (``A`` > 0) bounds the LLR targets: instead of driving ``L`` to +-inf, the
binary targets become ``sigmoid(+-A)``, i.e. smoothed labels whose LLR is exactly +-A.
``label_smoothing`` (``eps`` in (0, 1)) is softmax's counterpart: the cross-entropy target
puts ``1 - eps + eps / K`` on the class and ``eps / K`` on every other one, so the optimal
logit differences are bounded too. It changes the training loss only - not scores or
probabilities - so a packed ``.lbits`` file does not record it.

Every head's *probabilities* (:meth:`Head.probs`) are what calibration and likelihood are
measured on, the same way for every head (:mod:`leanbits.calibration`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from leanbits.errors import ConfigError
from leanbits.settings.train import HEADS

#: most classes a head may have (a forged count must not allocate a huge code matrix)
MAX_CLASSES = 1 << 16


def binary_code(num_classes: int) -> Tensor:
    """The ceil(log2 K)-bit binary code: row k is k in binary, most significant bit first."""
    bits = max(1, math.ceil(math.log2(num_classes)))
    k = torch.arange(num_classes).unsqueeze(1)
    shifts = torch.arange(bits - 1, -1, -1).unsqueeze(0)
    return ((k >> shifts) & 1).to(torch.float32)


def _check_code(code: Tensor, num_classes: int) -> Tensor:
    code = torch.as_tensor(code, dtype=torch.float32)
    if code.ndim != 2 or code.shape[0] != num_classes:
        raise ConfigError(
            f"code matrix must be {num_classes} x M (one row per class), got shape "
            f"{tuple(code.shape)}"
        )
    if not torch.all((code == 0) | (code == 1)):
        raise ConfigError("code matrix entries must be 0 or 1")
    # torch.unique over rows, not a set of Python tuples: a file's header may hold 65536 rows
    if torch.unique(code, dim=0).shape[0] != num_classes:
        raise ConfigError("code matrix rows must be distinct: two classes share a codeword")
    return code


@dataclass
class Head:
    """A head: turns network outputs into a loss, class scores and probabilities.

    Args:
        kind: ``softmax``, ``llr`` or ``llr-code``.
        num_classes: K.
        llr_target: optional bound A on the LLR targets (LLR heads only).
        label_smoothing: optional label smoothing eps of the cross-entropy (softmax only).
        code: K x M 0/1 code matrix for ``llr-code`` (default :func:`binary_code`).

    Example:
        >>> head = Head("llr", 10)
        >>> head.out_features
        10
    """

    kind: str
    num_classes: int
    llr_target: float | None = None
    code: Tensor | None = None
    label_smoothing: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in HEADS:
            raise ConfigError(f"unknown head {self.kind!r}; valid: {', '.join(HEADS)}")
        n = self.num_classes
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not (
                2 <= n <= MAX_CLASSES):
            raise ConfigError(
                f"head num_classes = {n!r}: a head needs a whole number of classes from 2 to "
                f"{MAX_CLASSES:,}"
            )
        self.num_classes = int(n)
        if self.llr_target is not None:
            if self.kind == "softmax":
                raise ConfigError("llr_target applies to the llr and llr-code heads only")
            t = self.llr_target
            if isinstance(t, bool) or not isinstance(t, numbers.Real) or not (
                    t > 0 and math.isfinite(t)):
                raise ConfigError(f"llr_target must be a positive number, got {t!r}")
            self.llr_target = float(t)
        if self.label_smoothing is not None:
            if self.kind != "softmax":
                raise ConfigError("label_smoothing applies to the softmax head only (the LLR "
                                  "heads bound their targets with llr_target)")
            e = self.label_smoothing
            if isinstance(e, bool) or not isinstance(e, numbers.Real) or not 0 < e < 1:
                raise ConfigError(f"label_smoothing must be a number in (0, 1), got {e!r}")
            self.label_smoothing = float(e)
        if self.kind == "llr-code":
            self.code = _check_code(
                binary_code(self.num_classes) if self.code is None else self.code,
                self.num_classes,
            )
        elif self.code is not None:
            raise ConfigError("a code matrix applies to the llr-code head only")

    @property
    def out_features(self) -> int:
        """Number of network outputs this head reads."""
        return self.code.shape[1] if self.kind == "llr-code" else self.num_classes

    def _binary_targets(self, targets: Tensor) -> Tensor:
        if self.kind == "llr":
            t = F.one_hot(targets, self.num_classes).to(torch.float32)
        else:
            t = self.code.to(targets.device)[targets]
        if self.llr_target is not None:
            hi = 1.0 / (1.0 + math.exp(-self.llr_target))
            t = t * hi + (1 - t) * (1 - hi)
        return t

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean over the batch of the head's loss (summed over binary events for LLR heads)."""
        if self.kind == "softmax":
            return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing or 0.0)
        t = self._binary_targets(targets)
        per = F.binary_cross_entropy_with_logits(outputs, t, reduction="none")
        return per.sum(dim=1).mean()

    def scores(self, outputs: Tensor) -> Tensor:
        """Class scores; ``scores(outputs).argmax(1)`` is the prediction."""
        if self.kind in ("softmax", "llr"):
            return outputs
        signs = 2.0 * self.code.to(outputs.device) - 1.0  # K x M, +1 where the bit is 1
        return F.logsigmoid(outputs.unsqueeze(1) * signs.unsqueeze(0)).sum(dim=2)

    def probs(self, outputs: Tensor) -> Tensor:
        """Class probabilities (rows sum to 1): ``exp(log_probs(outputs))``."""
        return self.log_probs(outputs).exp()

    def log_probs(self, outputs: Tensor) -> Tensor:
        """Log of the class probabilities, the one probability output every head is
        measured on (NLL, calibration).

        softmax: the log-softmax of the logits. llr: the one-vs-rest probabilities
        ``sigmoid(L_k)`` renormalised to sum to 1, i.e. ``log sigmoid(L_k) - logsumexp_j
        log sigmoid(L_j)`` (the argmax is the argmax of the LLRs). llr-code: the
        log-softmax of the soft-decoding scores, i.e. the posterior under independent
        bits and a uniform prior over codewords. Computed in log space, so no probability
        underflows to 0.
        """
        if self.kind == "llr":
            ls = F.logsigmoid(outputs)
            return ls - torch.logsumexp(ls, dim=1, keepdim=True)
        return torch.log_softmax(self.scores(outputs), dim=1)

    def predict(self, outputs: Tensor) -> Tensor:
        return self.scores(outputs).argmax(dim=1)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "num_classes": self.num_classes}
        if self.llr_target is not None:
            d["llr_target"] = self.llr_target
        if self.label_smoothing is not None:
            d["label_smoothing"] = self.label_smoothing
        if self.kind == "llr-code":
            d["code"] = self.code.to(torch.int64).tolist()
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Head:
        """The head a :meth:`to_dict` dict describes (as read from JSON: checked, not trusted).

        Raises:
            ConfigError: not a dict, a missing or unknown key, or a value :class:`Head`
                refuses.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a head must be a JSON object, got {type(d).__name__}")
        allowed = {"kind", "num_classes", "llr_target", "code", "label_smoothing"}
        if set(d) - allowed or {"kind", "num_classes"} - set(d):
            raise ConfigError(
                f"a head has the keys kind, num_classes and optionally llr_target, code, "
                f"label_smoothing; got {sorted(d)}"
            )
        code = d.get("code")
        if code is not None:
            if not isinstance(code, list) or len(code) > MAX_CLASSES or any(
                    not isinstance(row, list) or len(row) > MAX_CLASSES for row in code):
                raise ConfigError("head code must be a K x M list of 0/1 rows")
            try:
                code = torch.tensor(code, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError):
                raise ConfigError("head code must be a K x M list of 0/1 rows") from None
        return cls(kind=d["kind"], num_classes=d["num_classes"],
                   llr_target=d.get("llr_target"), code=code,
                   label_smoothing=d.get("label_smoothing"))
