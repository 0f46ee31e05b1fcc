"""Weight quantization: uniform (symmetric), k-means and entropy-constrained codebooks.

Every quantizer acts on the *nonzero* weights of a layer only. A weight that is exactly zero
(pruned) stays exactly zero and gets no codebook entry: the positions section of a
``.lbits`` file says where the nonzeros are, the values section says which codebook entry
each one takes.

``uniform``
    ``2**b`` symmetric levels ``±1·s, ±2·s, ..., ±L·s`` with ``L = 2**(b-1)`` and
    ``s = max|w| / L`` (one scale per layer, or one per output channel). It is mid-tread:
    a weight under half a step (``|w| < s/2``) rounds to zero and becomes a pruned position,
    so uniform quantization can remove connections. (An earlier version kept every nonzero
    on level ±1, which inflated small weights to a full step and wrecked peaked layers.)
``kmeans``
    A codebook of at most ``2**b`` values from 1-D k-means (Lloyd) over the nonzero
    weights, with linear initialisation between their min and max (Deep Compression, Han
    et al. 2016). Clusters that end up empty are dropped, so the codebook may be shorter.
    When the layer has no more distinct nonzero values than ``2**b`` the codebook is the
    set of those values: quantization is then lossless (and idempotent).
``ecsq``
    Entropy-constrained scalar quantization (Chou, Lookabaugh & Gray 1989, in one
    dimension): the k-means codebook is the start, then assignments and levels are
    iterated to minimise ``sum (w - c)^2 / P + lambda * sum bits(code)``, where ``P`` is
    the mean square of the layer's nonzero weights (so ``lambda`` is scale-free: the
    relative squared error one coded bit is worth) and ``bits(code)`` is the code length
    under the very frequency table the range coder will store
    (:func:`leanbits.bits.entropy.coder_code_lengths`). A weight may so go to a farther but
    more frequent level; rare levels empty out and are dropped. ``lambda = 0`` is k-means.
    Masks are kept (a nonzero stays nonzero), and a layer already on at most ``2**b``
    values is stored as is, like k-means.

Codes are int64 with ``-1`` where the weight is zero; :func:`dequantize` turns
``(codes, codebook)`` back into exactly the float32 tensor the quantized model uses.

This module holds the ``uniform`` quantizer, the registry (:data:`QUANTIZERS`) and
:func:`quantize`; k-means is in :mod:`.kmeans`, ECSQ in :mod:`.ecsq`, and the
:class:`Quantized` type, :func:`dequantize` and fixed point in :mod:`.codes` (all of them
importable from here).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from leanbits.bits.codes import (
    MAX_BITS,
    MIN_BITS,
    Quantized,
    check_bits,
    check_weight,
    dequantize,
    fixed_point,
    from_fixed_point,
)
from leanbits.bits.ecsq import (
    CODEBOOK_ENTRY_BITS,
    DEFAULT_RATE_LAMBDA,
    ECSQ_MAX_ITER,
    ECSQ_WEIGHTED_MAX_ITER,
    check_rate_lambda,
    lower_envelope,
    quantize_ecsq,
)
from leanbits.bits.kmeans import quantize_kmeans
from leanbits.errors import ConfigError

__all__ = [
    "CODEBOOK_ENTRY_BITS", "DEFAULT_RATE_LAMBDA", "ECSQ_MAX_ITER", "ECSQ_WEIGHTED_MAX_ITER",
    "MAX_BITS", "MIN_BITS", "QUANTIZERS", "Quantized", "check_bits", "check_quant_options",
    "dequantize", "fixed_point", "from_fixed_point", "lower_envelope", "quantize",
    "quantize_ecsq", "quantize_kmeans", "quantize_uniform", "uniform_codebook",
]


def uniform_codebook(scales: Tensor, bits: int) -> Tensor:
    """The float32 codebook of :func:`quantize_uniform`: ``levels * scale`` per channel.

    Args:
        scales: float32 ``[1]`` (per layer) or ``[C]`` (per output channel).
        bits: bit width; ``2**bits`` levels ``-L..-1, 1..L`` with ``L = 2**(bits-1)``.

    Returns:
        float32 ``[C, 2**bits]``: row ``c`` is ``scales[c]`` times the levels, in code order.
    """
    half = 1 << (bits - 1)
    levels = torch.cat([torch.arange(-half, 0), torch.arange(1, half + 1)]).to(torch.float32)
    scales = scales.to(torch.float32)
    book = scales.reshape(-1, 1) * levels.reshape(1, -1)  # one IEEE float32 product per entry
    return book


def quantize_uniform(
    weight: Tensor, bits: int, per_channel: bool = False, mask: Tensor | None = None
) -> Quantized:
    """Symmetric uniform quantization of the nonzero weights to ``2**bits`` levels.

    The levels are ``+-1 .. +-2**(bits-1)`` steps of ``max|w| / 2**(bits-1)``; zero is
    carried by the positions, so a weight under half a step is pruned (code ``-1``).

    Args:
        weight: a weight tensor (output channels along dim 0).
        bits: 1..16.
        per_channel: one scale per output channel instead of one per layer.
        mask: optional bool mask; entries where it is False are treated as zero.

    Returns:
        A :class:`Quantized` with ``codes`` in ``[0, 2**bits)`` (``-1`` at zeros); code ``j``
        stands for level ``j - L`` if ``j < L`` else ``j - L + 1`` (``L = 2**(bits-1)``).

    Example:
        >>> q = quantize_uniform(torch.tensor([[0.0, 0.5, -1.0, 0.26]]), bits=2)
        >>> q.dequantized.tolist()
        [[0.0, 0.5, -1.0, 0.5]]
    """
    bits = check_bits(bits)
    w = check_weight(weight, mask)
    half = 1 << (bits - 1)
    rows = w.reshape(w.shape[0], -1) if (per_channel and w.ndim >= 1) else w.reshape(1, -1)
    # max/L is exact in float32 (L is a power of two), which makes re-quantizing a
    # quantized tensor reproduce it exactly.
    scales = rows.abs().amax(dim=1) / half
    s64 = scales.to(torch.float64).reshape(-1, 1)
    mag = torch.where(s64 > 0, rows.abs().to(torch.float64) / s64.clamp_min(1e-300), 0.0)
    # Mid-tread: a weight below half a step rounds to zero and becomes a pruned position.
    # (Forcing it onto level +-1 instead would inflate every small weight to a full step:
    # with a peaked weight distribution - e.g. after weight decay - most weights are small,
    # and a 4-bit LeNet-300-100 fell from 98 % to about 35 % test accuracy that way.)
    level = torch.round(mag).clamp(0, half).to(torch.int64)
    codes = torch.where(rows < 0, half - level, level + half - 1)
    codes = torch.where((rows == 0) | (level == 0), torch.full_like(codes, -1), codes)
    codes = codes.reshape(w.shape)
    codebook = uniform_codebook(scales, bits)
    if not per_channel:
        codebook = codebook.reshape(-1)
    return Quantized("uniform", bits, codes, codebook, scales, dequantize(codes, codebook))


def _kmeans_entry(weight: Tensor, bits: int, mask: Tensor | None, *, per_channel: bool,
                  rate_lambda: float | None, max_iter: int) -> Quantized:
    return quantize_kmeans(weight, bits, mask=mask, max_iter=max_iter)


def _uniform_entry(weight: Tensor, bits: int, mask: Tensor | None, *, per_channel: bool,
                   rate_lambda: float | None, max_iter: int) -> Quantized:
    return quantize_uniform(weight, bits, per_channel=per_channel, mask=mask)


def _ecsq_entry(weight: Tensor, bits: int, mask: Tensor | None, *, per_channel: bool,
                rate_lambda: float | None, max_iter: int) -> Quantized:
    lam = DEFAULT_RATE_LAMBDA if rate_lambda is None else rate_lambda
    return quantize_ecsq(weight, bits, lam, mask=mask, max_iter=max_iter)


#: The quantizers by name (``--quant``); each entry takes the same keyword options.
QUANTIZERS: dict[str, Callable[..., Quantized]] = {
    "kmeans": _kmeans_entry,
    "uniform": _uniform_entry,
    "ecsq": _ecsq_entry,
}


def quantize(
    weight: Tensor, bits: int, quant: str = "kmeans", mask: Tensor | None = None, *,
    per_channel: bool = False, rate_lambda: float | None = None, max_iter: int = 100,
) -> Quantized:
    """Quantize one weight tensor with the quantizer named ``quant``.

    Args:
        weight: a weight tensor (output channels along dim 0).
        bits: 1..16.
        quant: a name in :data:`QUANTIZERS`.
        mask: optional bool mask; entries where it is False are treated as zero.
        per_channel: ``uniform`` only: one scale per output channel.
        rate_lambda: ``ecsq`` only: the rate weight (None: :data:`DEFAULT_RATE_LAMBDA`).
        max_iter: iterations of the k-means / ECSQ loops at most.

    Returns:
        The :class:`Quantized` tensor.

    Raises:
        ConfigError: an unknown quantizer, or an option that the quantizer does not take.

    Example:
        >>> quantize(torch.tensor([0.0, 1.0, 3.0]), 1, "ecsq", rate_lambda=0.1).codes.tolist()
        [-1, 0, 1]
    """
    check_quant_options(quant, per_channel=per_channel, rate_lambda=rate_lambda)
    return QUANTIZERS[quant](weight, bits, mask, per_channel=per_channel,
                             rate_lambda=rate_lambda, max_iter=max_iter)


def check_quant_options(quant: str, *, per_channel: bool = False,
                        rate_lambda: float | None = None) -> None:
    """Refuse an unknown quantizer or an option it would silently ignore.

    Raises:
        ConfigError: with the valid choices, or the quantizer the option belongs to.
    """
    if quant not in QUANTIZERS:
        raise ConfigError(f"quant must be one of {', '.join(QUANTIZERS)}; got {quant!r}")
    if per_channel and quant != "uniform":
        raise ConfigError(f"per_channel applies to quant uniform only (quant is {quant})")
    if rate_lambda is not None:
        if quant != "ecsq":
            raise ConfigError(f"rate_lambda applies to quant ecsq only (quant is {quant})")
        check_rate_lambda(rate_lambda)
