"""Positions of the nonzero weights: dense, bitmask, relative (Han et al.) and entropy-coded.

A layer of ``n`` weights with ``k`` nonzeros needs at least ``log2 C(n, k)`` bits to say
which ``k`` are nonzero (:func:`info_bound_bits`); every encoding is reported beside it.

``dense``
    No position data: every weight has a value code and zero is one of the codes.
``bitmask``
    One bit per possible connection, ``n`` bits.
``relative``
    Han et al. 2016: each stored entry holds the gap ``d`` (zeros skipped since the previous
    entry) in an ``r``-bit field. A gap ``>= 2**r`` is bridged by *filler* entries
    (field ``2**r - 1``, i.e. 2**r positions further, value slot = the zero code), so a gap
    ``d`` costs ``d // 2**r + 1`` entries. ``r`` is chosen per layer to minimise
    ``entries * (r + value bits)`` (:func:`choose_relative_r`).
``coded``
    The bitmask, range-coded with an adaptive binary model: the weight matrix is scanned row
    by row (or column by column), and the probability that entry ``(i, j)`` is nonzero is
    ``(c_j + a * k / n) / (i + a)`` where ``c_j`` counts the nonzeros of column ``j`` in the
    rows already coded. This learns dead inputs (all-zero columns) or dead outputs
    (transposed) as it goes; the prior strength ``a`` (1, 2, 4, ..., 64 or infinity = the
    static ``k/n``) and the orientation are picked per layer and stored (4 bits). The
    decoder needs ``k`` (stored). Optionally the number of nonzeros of every scanned row is
    sent first (Exp-Golomb codes of an order chosen per layer); each entry's probability
    then also knows its row's density ``r_i / cols``, combined with the column estimate by
    multiplying odds: ``odds(p) = odds(column) * odds(row) / odds(k / n)``. That learns dead
    or busy outputs *and* inputs at once (10-14 % fewer position bits than the column model
    alone on pruned LeNet-300-100 layers); rows with no or only nonzeros cost no range-coder
    bits. Each row's probabilities depend on the rows before it, so
    an adaptive model is decoded one row per range-decoder call (the whole row at once);
    the number of rows a file may scan is capped (``MAX_CODED_ROWS`` in
    :mod:`leanbits.bits.records`), and the static model is decoded in a single call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np

# POSITION_ENCODINGS, the names of the schemes below, is in leanbits.settings.bits

#: largest gap field width stored in a file (5-bit field holding r - 1)
MAX_R = 32
#: prior strengths of the coded scheme; index 7 (None) is the static model p = k / n
CODED_PRIORS: tuple[int | None, ...] = (1, 2, 4, 8, 16, 32, 64, None)


def info_bound_bits(n: int, k: int) -> float:
    """``log2 C(n, k)``: bits any code needs on average to say which ``k`` of ``n`` are set.

    Example:
        >>> info_bound_bits(4, 2) == math.log2(6)
        True
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got n={n}, k={k}")
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def fixed_width(alphabet: int) -> int:
    """Bits of a fixed-width code for ``alphabet`` symbols (0 for a single symbol).

    Example:
        >>> [fixed_width(a) for a in (1, 2, 3, 16, 17)]
        [0, 1, 2, 4, 5]
    """
    return max(0, int(alphabet) - 1).bit_length()


# ----------------------------------------------------------------------------- relative


def _gaps(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.int64)
    return np.diff(positions, prepend=-1) - 1


def relative_entries(positions: np.ndarray, r: int) -> int:
    """Number of entries (real + filler) the relative scheme with ``r``-bit gaps needs."""
    gaps = _gaps(positions)
    return int((gaps >> r).sum() + gaps.size)


def relative_size_bits(positions: np.ndarray, r: int, codebook_size: int) -> int:
    """``entries * (r + value bits)``: the cost the choice of ``r`` minimises.

    The value alphabet gains the zero (filler) code when any filler is needed.
    """
    entries = relative_entries(positions, r)
    has_filler = entries > len(positions)
    return entries * (r + fixed_width(codebook_size + int(has_filler)))


def choose_relative_r(positions: np.ndarray, codebook_size: int) -> int:
    """The gap width ``r`` in ``1..32`` that minimises :func:`relative_size_bits` (smallest wins
    a tie).

    Example:
        >>> choose_relative_r(np.array([0, 3, 4, 12]), codebook_size=4)  # gaps 0, 2, 0, 7
        3
    """
    gaps = _gaps(positions)
    top = max(1, int(gaps.max()).bit_length()) if gaps.size else 1
    # Beyond the width of the largest gap there are no fillers left, so cost only rises.
    candidates = range(1, min(MAX_R, top) + 1)
    return min(candidates, key=lambda r: (relative_size_bits(positions, r, codebook_size), r))


def relative_encode(positions: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Gap fields and filler flags for sorted ``positions``.

    Returns:
        ``(fields, is_filler)``: int64 fields in ``[0, 2**r)`` and a bool array, one per entry.

    Example:
        >>> f, filler = relative_encode(np.array([1, 10]), r=2)
        >>> f.tolist(), filler.tolist()
        ([1, 3, 3, 0], [False, True, True, False])
    """
    if not 1 <= r <= MAX_R:
        raise ValueError(f"r must be in [1, {MAX_R}], got {r}")
    gaps = _gaps(positions)
    step = 1 << r
    fills = gaps >> r
    counts = fills + 1
    total = int(counts.sum())
    fields = np.full(total, step - 1, dtype=np.int64)
    is_filler = np.ones(total, dtype=bool)
    last = np.cumsum(counts) - 1  # the real entry closes each group of fillers
    fields[last] = gaps - fills * step
    is_filler[last] = False
    return fields, is_filler


def relative_decode(fields: np.ndarray, is_filler: np.ndarray, n: int) -> np.ndarray:
    """Positions of the real (non-filler) entries.

    Raises:
        ValueError: the entries run past the end of the layer (checked before the positions
            are built, so that they fit in int32 for any layer under 2**31 entries).
    """
    fields = np.asarray(fields)
    end = int(fields.sum(dtype=np.int64)) + fields.size  # one past the last entry
    if end > n:
        raise ValueError(f"relative index runs past the layer end ({end - 1} >= {n})")
    pos = np.add(fields, 1, dtype=np.int32 if n < (1 << 31) else np.int64)
    np.cumsum(pos, out=pos)
    pos -= 1
    return pos[~np.asarray(is_filler, dtype=bool)]


# -------------------------------------------------------------------------------- coded


@dataclass
class CodedPositions:
    """A range-coded bitmask: orientation (0 rows, 1 columns), prior index, words, and the
    per-row nonzero counts with their Exp-Golomb order when the row model is used."""

    transpose: bool
    prior: int
    words: np.ndarray
    row_counts: np.ndarray | None = None
    golomb: int = 0


#: largest Exp-Golomb order of the row counts (a 4-bit field)
MAX_GOLOMB = 15


def golomb_bits(values: np.ndarray, order: int) -> int:
    """Bits of the order-``order`` Exp-Golomb codes of ``values`` (non-negative ints):
    ``uv(v >> order)`` then the ``order`` low bits.

    Example:
        >>> golomb_bits(np.array([0, 1, 5]), 0), golomb_bits(np.array([0, 1, 5]), 2)
        (9, 11)
    """
    high = (np.asarray(values, dtype=np.int64) >> order) + 1
    # bit_length(high) - 1; log2 is exact at powers of two for these (< 2**53) integers
    lengths = np.floor(np.log2(high)).astype(np.int64)
    return int((2 * lengths + 1 + order).sum())


def best_golomb(values: np.ndarray) -> tuple[int, int]:
    """``(order, bits)`` of the cheapest Exp-Golomb order for ``values``."""
    return min(((g, golomb_bits(values, g)) for g in range(MAX_GOLOMB + 1)),
               key=lambda t: (t[1], t[0]))


def combine_row(column: np.ndarray, row: np.ndarray | float, base: float) -> np.ndarray:
    """Probability of a nonzero from a column estimate and the row's density, by odds:
    ``odds = odds(column) * odds(row) / odds(base)``, written with products only (no
    logarithms) so that encoder and decoder compute the same float64 bits.

    Example:
        >>> combine_row(np.array([0.5]), 0.25, 0.5).tolist()  # column says nothing
        [0.25]
    """
    yes = column * row * (1.0 - base)
    return yes / (yes + (1.0 - column) * (1.0 - row) * base)


def _matrix(mask: np.ndarray, rows: int, transpose: bool) -> np.ndarray:
    m = np.asarray(mask, dtype=bool).reshape(rows, -1)
    return np.ascontiguousarray(m.T) if transpose else m


def _all_probs(m: np.ndarray, n: int, k: int, prior: int) -> np.ndarray:
    a = CODED_PRIORS[prior]
    if a is None:
        return np.full(m.shape, k / n, dtype=np.float64)
    before = np.cumsum(m, axis=0, dtype=np.int64) - m
    i = np.arange(m.shape[0], dtype=np.int64).reshape(-1, 1)
    return (before * n + a * k) / ((i + a) * n).astype(np.float64)


def _cost_bits(m: np.ndarray, p: np.ndarray) -> float:
    return float(-np.where(m, np.log2(p), np.log2(1.0 - p)).sum())


def _row_model_probs(m: np.ndarray, probs: np.ndarray, counts: np.ndarray, n: int,
                     k: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of the rows the row model codes (those neither empty nor full)."""
    coded = (counts > 0) & (counts < m.shape[1])
    density = (counts[coded] / m.shape[1]).reshape(-1, 1)
    return coded, combine_row(probs[coded], density, k / n)


def coded_rows(rows: int, n: int, transpose: bool) -> int:
    """Rows of the matrix the coded scheme scans for a weight of ``n`` entries and ``rows``
    output channels: ``rows``, or ``n / rows`` when transposed."""
    return n // rows if transpose else rows


def coded_encode(mask: np.ndarray, rows: int, max_rows: int | None = None,
                 row_model: bool | None = None) -> CodedPositions | None:
    """Range-code a bitmask (viewed as ``rows x n/rows``) with the best of 32 models: 2
    orientations x 8 column priors x with or without the row counts.

    Args:
        mask: the nonzero mask, any shape with ``rows * (n / rows)`` entries.
        rows: output channels (the first dimension of the weight).
        max_rows: consider only orientations that scan at most this many rows (None: any).
        row_model: send the row counts and use them (True), never (False), or whichever
            codes smaller (None).

    Returns:
        ``None`` when there is nothing to code (no or all nonzeros: ``k`` says it all).

    Raises:
        ValueError: neither orientation scans at most ``max_rows`` rows.
    """
    flat = np.asarray(mask, dtype=bool).ravel()
    n, k = flat.size, int(flat.sum())
    if k in (0, n):
        return None
    orientations = [t for t in (False, True)
                    if max_rows is None or coded_rows(rows, n, t) <= max_rows]
    if not orientations:
        raise ValueError(f"a {rows} x {n // rows} coded matrix scans more than {max_rows} rows")
    best = None
    for transpose in orientations:
        m = _matrix(flat, rows, transpose)
        counts = m.sum(axis=1, dtype=np.int64)
        golomb, count_bits = best_golomb(counts)
        for prior in range(len(CODED_PRIORS)):
            probs = _all_probs(m, n, k, prior)
            options = []
            if row_model is not True:
                options.append((_cost_bits(m, probs), False))
            if row_model is not False:
                coded, p = _row_model_probs(m, probs, counts, n, k)
                options.append((_cost_bits(m[coded], p) + count_bits + 4, True))
            for cost, with_rows in options:
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, transpose, prior, with_rows)
    _, transpose, prior, with_rows = best
    m = _matrix(flat, rows, transpose)
    probs = _all_probs(m, n, k, prior)
    counts = m.sum(axis=1, dtype=np.int64)
    if with_rows:
        coded, probs = _row_model_probs(m, probs, counts, n, k)
        m = m[coded]
    encoder = constriction.stream.queue.RangeEncoder()
    if m.size:
        encoder.encode(m.ravel().astype(np.int32),
                       constriction.stream.model.Bernoulli(perfect=False), probs.ravel())
    words = encoder.get_compressed().astype(np.uint32)
    if not with_rows:
        return CodedPositions(transpose, prior, words)
    return CodedPositions(transpose, prior, words, counts, best_golomb(counts)[0])


def coded_decode(
    words: np.ndarray, rows: int, n: int, k: int, transpose: bool, prior: int,
    row_counts: np.ndarray | None = None,
) -> np.ndarray:
    """Inverse of :func:`coded_encode`: the flat bool mask of ``n`` entries.

    The static model (``prior`` 7) without row counts is decoded in one call. Otherwise
    each row's probabilities depend on the column counts of the rows above (or on its own
    count), so it takes one call per scanned row that is neither empty nor full, each
    decoding the whole row from one vector of probabilities; the caller bounds the rows
    (``coded_rows``).

    Args:
        row_counts: the nonzeros of every scanned row, when the row model was used.

    Raises:
        ValueError: the decoded mask does not have exactly ``k`` nonzeros, or the row
            counts do not fit the matrix.
    """
    if k == 0 or k == n:
        return np.full(n, k == n, dtype=bool)
    cols = n // rows
    r, c = (cols, rows) if transpose else (rows, cols)
    if row_counts is not None:
        row_counts = np.asarray(row_counts, dtype=np.int64)
        if row_counts.shape != (r,) or row_counts.min() < 0 or row_counts.max() > c:
            raise ValueError(f"row counts do not fit a {r} x {c} matrix")
        if int(row_counts.sum()) != k:
            raise ValueError(f"row counts add up to {int(row_counts.sum())}, expected {k}")
    decoder = constriction.stream.queue.RangeDecoder(np.asarray(words, dtype=np.uint32))
    family = constriction.stream.model.Bernoulli(perfect=False)
    a = CODED_PRIORS[prior]
    base = k / n
    if a is None and row_counts is None:
        out = decoder.decode(family, np.full(n, base, dtype=np.float64)).astype(bool)
        out = out.reshape(r, c)
    else:
        out = np.empty((r, c), dtype=bool)
        # numerator c_j * n + a * k of every column's probability, kept exactly in int64
        numerator = np.full(c, (a or 0) * k, dtype=np.int64)
        for i in range(r):
            if row_counts is not None and row_counts[i] in (0, c):
                out[i] = row_counts[i] == c
            else:
                if a is None:
                    probs = np.full(c, base, dtype=np.float64)
                else:
                    probs = numerator / float((i + a) * n)
                if row_counts is not None:
                    probs = combine_row(probs, row_counts[i] / c, base)
                out[i] = decoder.decode(family, probs).astype(bool)
            numerator[out[i]] += n
    found = int(np.count_nonzero(out))
    if found != k:
        raise ValueError(f"coded positions decode to {found} nonzeros, expected {k}")
    return (out.T if transpose else out).ravel()
