"""Weight quantization: uniform (symmetric) and k-means codebooks, zero always exact.

Both quantizers act on the *nonzero* weights of a layer only. A weight that is exactly zero
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

Codes are int64 with ``-1`` where the weight is zero; :func:`dequantize` turns
``(codes, codebook)`` back into exactly the float32 tensor the quantized model uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from leanbits.errors import ConfigError

MIN_BITS, MAX_BITS = 1, 16
QUANTIZERS = ("kmeans", "uniform")


@dataclass
class Quantized:
    """One quantized weight tensor.

    Attributes:
        method: ``"kmeans"`` or ``"uniform"``.
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


def _check_weight(weight: Tensor, mask: Tensor | None) -> Tensor:
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
    w = _check_weight(weight, mask)
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


def _lloyd_1d(values: np.ndarray, k: int, max_iter: int) -> np.ndarray:
    """1-D k-means on sorted float64 ``values`` from a linear initialisation; returns centroids.

    Empty clusters keep their previous centroid (and are dropped by the caller if still
    empty at the end).
    """
    centroids = np.linspace(values[0], values[-1], k)
    assign = None
    for _ in range(max_iter):
        bounds = (centroids[:-1] + centroids[1:]) / 2
        new_assign = np.searchsorted(bounds, values, side="right")
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        counts = np.bincount(assign, minlength=k)
        sums = np.bincount(assign, weights=values, minlength=k)
        filled = counts > 0
        centroids = centroids.copy()
        centroids[filled] = sums[filled] / counts[filled]
        # Keep the order so the midpoint boundaries above stay valid.
        centroids = np.sort(centroids)
    return centroids


def quantize_kmeans(
    weight: Tensor, bits: int, mask: Tensor | None = None, max_iter: int = 100
) -> Quantized:
    """Share weights: a codebook of at most ``2**bits`` values by 1-D k-means on the nonzeros.

    Args:
        weight: a weight tensor.
        bits: 1..16.
        mask: optional bool mask; entries where it is False are treated as zero.
        max_iter: Lloyd iterations at most (it stops earlier when assignments settle).

    Returns:
        A :class:`Quantized` with a sorted, duplicate-free float32 codebook ``[K]``,
        ``K <= 2**bits`` (unused clusters dropped), ``codes`` the nearest entry (``-1`` at zeros).

    Example:
        >>> q = quantize_kmeans(torch.tensor([0.0, 1.0, 1.1, 3.0]), bits=2)
        >>> q.codebook.tolist(), q.codes.tolist()  # 3 distinct nonzeros <= 4: lossless
        ([1.0, 1.100000023841858, 3.0], [-1, 0, 1, 2])
    """
    bits = check_bits(bits)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    w = _check_weight(weight, mask)
    nz = w[w != 0].numpy().astype(np.float64)
    k = 1 << bits
    distinct = np.unique(nz)
    if distinct.size <= k:
        book = distinct.astype(np.float32)
    else:
        book = np.unique(_lloyd_1d(np.sort(nz), k, max_iter).astype(np.float32))
    codes = torch.full(w.shape, -1, dtype=torch.int64)
    if nz.size:
        # Final assignment against the float32 codebook actually stored, nearest entry.
        b64 = book.astype(np.float64)
        idx = np.searchsorted((b64[:-1] + b64[1:]) / 2, nz, side="right")
        used = np.unique(idx)
        if used.size < book.size:  # a cluster emptied by the float32 rounding: drop it
            book = book[used]
            idx = np.searchsorted(used, idx)
        codes[w != 0] = torch.from_numpy(idx.astype(np.int64))
    codebook = torch.from_numpy(book.copy())
    return Quantized("kmeans", bits, codes, codebook, None, dequantize(codes, codebook))


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
