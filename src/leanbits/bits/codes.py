"""What a quantizer produces and how codes become floats again: the :class:`Quantized`
tensor (int64 codes, ``-1`` at pruned positions, and a float32 codebook), the bit-width
check every quantizer shares, the weight check at the door (masked entries and ``-0.0``
become exactly zero), :func:`dequantize`, and the symmetric fixed point non-weights may be
stored in (:func:`fixed_point`, :func:`from_fixed_point`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from leanbits.errors import ConfigError

MIN_BITS, MAX_BITS = 1, 16


@dataclass
class Quantized:
    """One quantized weight tensor.

    Attributes:
        method: a name in :data:`QUANTIZERS` (``"kmeans"``, ``"uniform"``, ``"ecsq"``).
        bits: the requested bits per nonzero weight (codebook has at most ``2**bits`` entries).
        codes: int64, same shape as the weight; ``-1`` where the weight is zero, else an
            index into the codebook (per output channel for a 2-D codebook).
        codebook: float32 ``[K]`` (one codebook) or ``[C, K]`` (one row per output channel).
        scales: uniform only: the float32 scales (``[1]`` or ``[C]``) the codebook derives from;
            they, not the codebook, are what a ``.lbits`` file stores.
        dequantized: ``dequantize(codes, codebook)``, the float32 tensor the model uses.
    """

    method: str
    bits: int
    codes: Tensor
    codebook: Tensor
    scales: Tensor | None
    dequantized: Tensor

    @property
    def num_levels(self) -> int:
        """Size of the code alphabet (codebook entries per channel)."""
        return int(self.codebook.shape[-1])


def check_bits(bits: int) -> int:
    """Validate a bit width (1..16) and return it as int.

    Raises:
        ConfigError: ``bits`` is not an integer in [1, 16].
    """
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise ConfigError(f"bits must be an integer from {MIN_BITS} to {MAX_BITS}, got {bits!r}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ConfigError(
            f"bits must be from {MIN_BITS} to {MAX_BITS} (2 to 65536 levels), got {bits}"
        )
    return int(bits)


def check_weight(weight: Tensor, mask: Tensor | None) -> Tensor:
    """Float32 copy of ``weight`` with masked-out entries set to exactly zero."""
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a floating point tensor, got {type(weight).__name__}")
    w = weight.detach().to(device="cpu", dtype=torch.float32).clone()
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weight has NaN or infinite entries; cannot quantize")
    if mask is not None:
        if tuple(mask.shape) != tuple(w.shape):
            raise ValueError(
                f"mask shape {tuple(mask.shape)} differs from weight shape {tuple(w.shape)}"
            )
        w[~mask.detach().cpu().to(torch.bool)] = 0.0
    # -0.0 is a zero too: normalise so positions and values agree on what is pruned.
    w[w == 0] = 0.0
    return w


def fixed_point(tensor: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Symmetric fixed point with one scale per tensor (how non-weights are stored as ints).

    ``q = round(t / s)`` with ``s = max|t| / (2**(bits-1) - 1)``, so ``q`` lies in
    ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` and the largest magnitude is exact up to
    float32 rounding; an all-zero tensor gets ``s = 0``.

    Args:
        tensor: a floating point tensor (finite).
        bits: 2..16, the width of each stored integer.

    Returns:
        ``(q, scale)``: int64 ``q`` of the tensor's shape and a float32 scalar tensor
        ``scale``; :func:`from_fixed_point` gives the float32 values they stand for.

    Example:
        >>> q, s = fixed_point(torch.tensor([0.5, -1.27, 0.0]), bits=8)
        >>> q.tolist(), round(float(s), 6)
        ([50, -127, 0], 0.01)
    """
    bits = check_bits(bits)
    if bits < 2:
        raise ConfigError(f"fixed point needs at least 2 bits (sign + magnitude), got {bits}")
    t = tensor.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError("tensor has NaN or infinite entries; cannot store it in fixed point")
    top = (1 << (bits - 1)) - 1
    peak = float(t.abs().max()) if t.numel() else 0.0
    scale = torch.tensor(peak / top, dtype=torch.float32)
    if float(scale) == 0.0:
        return torch.zeros(t.shape, dtype=torch.int64), scale
    q = torch.round(t / float(scale)).clamp(-top, top).to(torch.int64)
    return q, scale


def from_fixed_point(q: Tensor, scale: Tensor) -> Tensor:
    """The float32 values of :func:`fixed_point`'s output: one IEEE float32 product each.

    Example:
        >>> from_fixed_point(torch.tensor([2, -1]), torch.tensor(0.25)).tolist()
        [0.5, -0.25]
    """
    return q.to(torch.float32) * scale.to(torch.float32)


def dequantize(codes: Tensor, codebook: Tensor) -> Tensor:
    """The float32 tensor that ``codes`` stand for (``-1`` -> exactly 0.0).

    Args:
        codes: int64 codes, ``-1`` at zeros.
        codebook: float32 ``[K]``, or ``[C, K]`` with one row per output channel (dim 0).

    Returns:
        float32 tensor of ``codes.shape``.

    Example:
        >>> dequantize(torch.tensor([-1, 0, 1]), torch.tensor([0.5, -2.0])).tolist()
        [0.0, 0.5, -2.0]
    """
    codes = codes.to(torch.int64)
    safe = codes.clamp_min(0)
    if codes.numel() == 0 or codebook.numel() == 0:
        return torch.zeros(codes.shape, dtype=torch.float32)
    if codebook.ndim == 1:
        vals = codebook.to(torch.float32)[safe]
    else:
        rows = safe.reshape(codes.shape[0], -1)
        ch = torch.arange(rows.shape[0]).reshape(-1, 1).expand_as(rows)
        vals = codebook.to(torch.float32)[ch, rows].reshape(codes.shape)
    return torch.where(codes < 0, torch.zeros((), dtype=torch.float32), vals)
