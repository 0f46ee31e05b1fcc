"""Weight sharing by 1-D k-means (Lloyd, from a linear initialisation between the smallest
and largest nonzero weight, as in Deep Compression): :func:`quantize_kmeans`, the ``kmeans``
quantizer and the start of ``ecsq``. A layer on no more distinct nonzeros than levels is
kept exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from leanbits.bits.codes import Quantized, check_bits, check_weight, dequantize


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
    w = check_weight(weight, mask)
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
