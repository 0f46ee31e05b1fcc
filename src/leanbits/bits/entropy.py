"""Entropy coding of value codes with ``constriction``'s range coder and a stored model.

Two-pass scheme: count the symbols, quantize the counts to a small integer frequency table
(``precision`` bits per entry), store that table, and range-code the symbols with the
``constriction.stream.model.Categorical`` built from it. The decoder reads the same integer
table and builds the same model from the same float64 array, so both sides see bit-identical
probabilities. The table's precision is chosen per stream to minimise table + payload.

All sizes here are exact: the payload is the list of 32-bit words the range coder emits,
and the table is ``alphabet * precision`` bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np

#: a frequency table entry has 1..MAX_PRECISION bits (stored as precision - 1 in 4 bits)
MAX_PRECISION = 16
PRECISION_FIELD_BITS = 4


@dataclass
class EntropyCoded:
    """A range-coded symbol stream and the integer model needed to decode it.

    Attributes:
        precision: bits per frequency table entry.
        freqs: int64 ``[alphabet]`` quantized frequencies (0 for symbols that never occur).
        words: uint32 compressed words from the range coder.
    """

    precision: int
    freqs: np.ndarray
    words: np.ndarray

    @property
    def table_bits(self) -> int:
        return PRECISION_FIELD_BITS + int(self.freqs.size) * self.precision

    @property
    def payload_bits(self) -> int:
        return 32 * int(self.words.size)


def empirical_entropy_bits(symbols: np.ndarray) -> float:
    """``N * H`` of the empirical (0th order) distribution of ``symbols``, in bits.

    Example:
        >>> empirical_entropy_bits(np.array([0, 1, 0, 1]))
        4.0
    """
    symbols = np.asarray(symbols)
    if symbols.size == 0:
        return 0.0
    if symbols.dtype.kind in "iu" and 0 <= symbols.min() and symbols.max() < (1 << 20):
        # small non-negative codes: linear passes over slices (bincount copies its input to
        # int64); the same counts in the same order as np.unique
        flat = symbols.ravel()
        counts = np.zeros(int(flat.max()) + 1, dtype=np.int64)
        for start in range(0, flat.size, 1 << 20):
            part = flat[start : start + (1 << 20)]
            counts += np.bincount(part, minlength=counts.size)
        counts = counts[counts > 0].astype(np.float64)
    else:
        counts = np.unique(symbols, return_counts=True)[1].astype(np.float64)
    n = counts.sum()
    return float(-(counts * np.log2(counts / n)).sum())


def quantize_frequencies(counts: np.ndarray, precision: int) -> np.ndarray:
    """Scale ``counts`` so the largest is ``2**precision - 1``; a seen symbol keeps >= 1.

    Example:
        >>> quantize_frequencies(np.array([1000, 10, 0, 1]), 4).tolist()
        [15, 1, 0, 1]
    """
    counts = np.asarray(counts, dtype=np.int64)
    top = int(counts.max()) if counts.size else 0
    if top == 0:
        return np.zeros_like(counts)
    limit = (1 << precision) - 1
    # Integer rounding (not float) so the table is reproducible anywhere.
    freqs = (counts * limit + top // 2) // top
    return np.where(counts > 0, np.maximum(freqs, 1), 0)


def _cross_entropy_bits(counts: np.ndarray, freqs: np.ndarray) -> float:
    used = counts > 0
    p = freqs[used] / freqs.sum()
    return float(-(counts[used] * np.log2(p)).sum())


def choose_precision(counts: np.ndarray) -> int:
    """Table precision (bits per entry) minimising table bits + estimated payload bits."""
    counts = np.asarray(counts, dtype=np.int64)
    best, best_bits = 1, math.inf
    needed = max(1, int(counts.max()).bit_length())  # beyond this the table is exact
    for p in range(1, min(MAX_PRECISION, needed) + 1):
        bits = counts.size * p + _cross_entropy_bits(counts, quantize_frequencies(counts, p))
        if bits < best_bits - 1e-9:
            best, best_bits = p, bits
    return best


def coder_code_lengths(counts: np.ndarray) -> np.ndarray:
    """Bits per symbol under the model :func:`encode_symbols` would store for ``counts``.

    That is ``-log2(f_j / sum f)`` with ``f`` the frequency table at the precision
    :func:`choose_precision` picks, so a rate term built on it prices symbols exactly as the
    range coder will (up to the coder's final-word rounding). Unseen symbols cost ``inf``.

    Args:
        counts: int ``[alphabet]`` symbol counts.

    Returns:
        float64 ``[alphabet]`` code lengths in bits.

    Example:
        >>> coder_code_lengths(np.array([30, 10, 0])).tolist()  # table at 2 bits: 3, 1, 0
        [0.4150374992788438, 2.0, inf]
    """
    counts = np.asarray(counts, dtype=np.int64)
    out = np.full(counts.shape, np.inf)
    if counts.size == 0 or int(counts.max()) == 0:
        return out
    freqs = quantize_frequencies(counts, choose_precision(counts))
    used = freqs > 0
    out[used] = -np.log2(freqs[used] / freqs.sum())
    return out


def _model(freqs: np.ndarray) -> constriction.stream.model.Categorical:
    # Built from exactly the stored integers, by encoder and decoder alike.
    return constriction.stream.model.Categorical(freqs.astype(np.float64), perfect=False)


def encode_symbols(symbols: np.ndarray, alphabet: int) -> EntropyCoded:
    """Range-code ``symbols`` (ints in ``[0, alphabet)``) with a stored frequency table.

    Args:
        symbols: 1-D integer array.
        alphabet: alphabet size (>= 2; a 1-symbol alphabet needs no bits at all).

    Returns:
        :class:`EntropyCoded` (table precision, integer frequencies, compressed words).

    Example:
        >>> code = encode_symbols(np.array([0, 0, 0, 1] * 100), alphabet=2)
        >>> bool((decode_symbols(code.words, code.freqs, 400) == [0, 0, 0, 1] * 100).all())
        True
    """
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if alphabet < 2:
        raise ValueError(f"entropy coding needs an alphabet of >= 2 symbols, got {alphabet}")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise ValueError(f"symbols must lie in [0, {alphabet})")
    counts = np.bincount(symbols, minlength=alphabet)
    if symbols.size == 0:
        return EntropyCoded(1, np.zeros(alphabet, dtype=np.int64), np.zeros(0, np.uint32))
    precision = choose_precision(counts)
    freqs = quantize_frequencies(counts, precision)
    encoder = constriction.stream.queue.RangeEncoder()
    encoder.encode(symbols.astype(np.int32), _model(freqs))
    return EntropyCoded(precision, freqs, encoder.get_compressed().astype(np.uint32))


def decode_symbols(words: np.ndarray, freqs: np.ndarray, count: int) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: ``count`` symbols as int32.

    Raises:
        ValueError: the table is empty although symbols are expected.
        AssertionError: (from constriction) the words are not a valid stream for this model;
            the container turns every such failure into a FormatError.
    """
    if count == 0:
        return np.zeros(0, dtype=np.int32)
    if int(np.asarray(freqs).sum()) == 0:
        raise ValueError("frequency table is all zero but symbols are expected")
    decoder = constriction.stream.queue.RangeDecoder(np.asarray(words, dtype=np.uint32))
    return decoder.decode(_model(np.asarray(freqs)), int(count)).astype(np.int32, copy=False)
