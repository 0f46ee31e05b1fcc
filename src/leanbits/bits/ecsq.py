"""Entropy-constrained scalar quantization (``ecsq``): starting from the k-means codebook,
weights move to the level of least squared error plus ``lambda`` times its code length under
the range coder's own frequency table, levels move to their members' mean, until nothing
changes. The exact 1-D assignment uses the lower envelope of the levels' cost parabolas;
with an importance per weight the assignment is done per weight. Iterations are bounded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from leanbits.bits.codes import Quantized, check_bits, check_weight, dequantize
from leanbits.bits.entropy import choose_precision, coder_code_lengths
from leanbits.bits.kmeans import quantize_kmeans
from leanbits.errors import ConfigError
from leanbits.settings.bits import DEFAULT_RATE_LAMBDA

#: ECSQ iterations at most (each costs O(levels x log weights), so this bounds the time)
ECSQ_MAX_ITER = 1000
#: ECSQ iterations at most with an importance per weight (each costs O(levels x weights))
ECSQ_WEIGHTED_MAX_ITER = 200
#: bits of one codebook entry in a ``.lbits`` file (a float32), part of ECSQ's rate
CODEBOOK_ENTRY_BITS = 32


def check_rate_lambda(lam: float) -> float:
    if isinstance(lam, bool) or not isinstance(lam, int | float | np.floating):
        raise ConfigError(f"rate_lambda must be a number >= 0, got {lam!r}")
    if not (np.isfinite(lam) and lam >= 0):
        raise ConfigError(f"rate_lambda must be a finite number >= 0, got {lam}")
    return float(lam)


def lower_envelope(centers: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which level minimises ``(x - centers[j])**2 + offsets[j]``, for every real ``x``.

    All the parabolas have the same curvature, so their minimum is piecewise one of them,
    in the order of ``centers``: the classic lower envelope of the lines
    ``-2 c_j x + c_j**2 + o_j``. A level whose parabola never reaches the minimum (its
    offset is too high for its place) gets no interval.

    Args:
        centers: float64 ``[K]``, strictly increasing.
        offsets: float64 ``[K]`` (``inf`` for a level that must not be used).

    Returns:
        ``(levels, bounds)``: ``levels`` int64 ``[M]`` the indices on the envelope from left
        to right, ``bounds`` float64 ``[M-1]`` where one hands over to the next;
        ``levels[np.searchsorted(bounds, x, side="right")]`` is the best level for ``x``
        (ties go to the right, as :func:`quantize_kmeans`'s midpoints do).

    Example:
        >>> lower_envelope(np.array([0.0, 1.0, 2.0]), np.array([0.0, 5.0, 0.0]))
        (array([0, 2]), array([1.]))
    """
    hull: list[int] = []
    bounds: list[float] = []
    for j in np.flatnonzero(np.isfinite(offsets)):
        while hull:
            i = hull[-1]
            # x where level j starts to beat level i
            x = (centers[i] + centers[j]) / 2 + (offsets[j] - offsets[i]) / (
                2 * (centers[j] - centers[i]))
            if bounds and x <= bounds[-1]:
                hull.pop()  # j beats i before i ever beat its left neighbour: i is hidden
                bounds.pop()
                continue
            bounds.append(float(x))
            break
        hull.append(int(j))
    return np.array(hull, dtype=np.int64), np.array(bounds, dtype=np.float64)


def _ecsq_1d(values: np.ndarray, book: np.ndarray, lam: float, entry_bits: float) -> np.ndarray:
    """Chou-Lookabaugh-Gray iterations on sorted float64 ``values`` from codebook ``book``.

    The rate counted is what the file spends on values: each weight's code length under
    the coder's table, plus per level the table entry (``precision`` bits) and the codebook
    entry (``entry_bits``). The per-level part is charged to a level's weights in equal
    shares when they choose a level, so a level too rare to pay for itself empties out.

    In one dimension every cell is an interval, so a state is its cell edges and each
    iteration needs only prefix sums: ``O(K log N)``, not ``O(N)``.

    Returns:
        int64 edges ``[M+1]`` into ``values``: level ``m`` holds ``values[e[m]:e[m+1]]``.
        The edges kept are those of the lowest cost seen: the coder's quantized
        frequencies and the shared level costs make the iteration only nearly monotone.
    """
    n = values.size
    s1 = np.concatenate([[0.0], np.cumsum(values)])
    s2 = np.concatenate([[0.0], np.cumsum(values**2)])
    scale = lam * s2[-1] / n  # lam * P: the cost in squared-weight units
    centers = np.asarray(book, dtype=np.float64)
    price = np.zeros(centers.size)  # first pass: plain nearest level
    best, best_cost, edges = None, np.inf, None
    for _ in range(ECSQ_MAX_ITER):
        _, bounds = lower_envelope(centers, scale * price)
        cuts = np.concatenate([[0], np.searchsorted(values, bounds, side="left"), [n]])
        new = np.unique(cuts)  # an empty cell's edges coincide: drop it
        if edges is not None and np.array_equal(new, edges):
            break  # fixed point
        edges = new
        counts = np.diff(edges)
        sums = np.diff(s1[edges])
        centers = sums / counts
        lengths = coder_code_lengths(counts)
        per_level = entry_bits + choose_precision(counts)
        distortion = np.diff(s2[edges]) - sums * centers  # sum (x - mean)^2 per cell
        rate = float((counts * lengths).sum()) + per_level * counts.size
        cost = float(distortion.sum()) + scale * rate
        if best is None or cost < best_cost:
            best, best_cost = edges, cost
        price = lengths + per_level / counts
    assert best is not None
    return best


def _weighted_assign(values: np.ndarray, h: np.ndarray, centers: np.ndarray,
                     offsets: np.ndarray) -> np.ndarray:
    """``argmin_j h_i (v_i - c_j)^2 + o_j`` for every value, in chunks of bounded memory."""
    out = np.empty(values.size, dtype=np.int64)
    step = max(1, (1 << 22) // max(1, centers.size))
    for s in range(0, values.size, step):
        v, w = values[s : s + step, None], h[s : s + step, None]
        out[s : s + step] = np.argmin(w * (v - centers[None, :]) ** 2 + offsets[None, :], axis=1)
    return out


def _ecsq_weighted(values: np.ndarray, h: np.ndarray, book: np.ndarray, lam: float,
                   entry_bits: float) -> np.ndarray:
    """Chou-Lookabaugh-Gray iterations with a per-weight importance ``h`` on the error.

    Cells need not be intervals any more (an important weight pays more for a far level),
    so each iteration scores every weight against every level: ``O(N K)``.

    Returns:
        int64 level index per value into the compacted, used levels (lowest cost seen).
    """
    centers = np.asarray(book, dtype=np.float64)
    price = np.zeros(centers.size)
    best, best_cost, assign = None, np.inf, None
    for _ in range(ECSQ_WEIGHTED_MAX_ITER):
        _, new = np.unique(_weighted_assign(values, h, centers, lam * price),
                           return_inverse=True)
        if assign is not None and np.array_equal(new, assign):
            break  # fixed point
        assign = new
        counts = np.bincount(assign)
        mass = np.bincount(assign, weights=h)
        centers = np.bincount(assign, weights=h * values) / mass
        lengths = coder_code_lengths(counts)
        per_level = entry_bits + choose_precision(counts)
        distortion = float((h * (values - centers[assign]) ** 2).sum())
        cost = distortion + lam * (float((counts * lengths).sum()) + per_level * counts.size)
        if best is None or cost < best_cost:
            best, best_cost = assign, cost
        price = lengths + per_level / counts
    assert best is not None
    return best


def _check_importance(importance: Tensor, shape: torch.Size) -> np.ndarray:
    """Flat float64 importances, each > 0 (a zero one would leave a weight's level free)."""
    if not isinstance(importance, Tensor) or tuple(importance.shape) != tuple(shape):
        got = tuple(importance.shape) if isinstance(importance, Tensor) else type(importance)
        raise ValueError(f"importance must be a tensor of the weight's shape {tuple(shape)}, "
                         f"got {got}")
    h = importance.detach().cpu().to(torch.float64).reshape(-1).numpy()
    if not (np.isfinite(h).all() and (h >= 0).all()):
        raise ValueError("importance must be finite and >= 0")
    positive = h[h > 0]
    floor = 1e-6 * float(positive.mean()) if positive.size else 1.0
    return np.maximum(h, floor)


def quantize_ecsq(
    weight: Tensor, bits: int, rate_lambda: float = DEFAULT_RATE_LAMBDA,
    mask: Tensor | None = None, max_iter: int = 100, importance: Tensor | None = None,
) -> Quantized:
    """Entropy-constrained scalar quantization of the nonzero weights (at most ``2**bits`` levels).

    Starts from the k-means codebook of :func:`quantize_kmeans` and alternates (1) moving
    each weight to the level of least ``(w - c)^2 + lambda * P * bits(level)`` and (2)
    setting each level to the mean of its weights and its bits to the range coder's code
    length for the new counts, until the assignment settles. A larger ``rate_lambda``
    gives fewer coded bits and more distortion; ``0`` reproduces k-means.

    Args:
        weight: a weight tensor.
        bits: 1..16; the codebook has at most ``2**bits`` entries (usually fewer).
        rate_lambda: relative squared error per coded bit, ``>= 0`` (distortion is divided
            by ``P``, the mean square of the nonzero weights, so one value fits any layer).
        mask: optional bool mask; entries where it is False are treated as zero.
        max_iter: Lloyd iterations of the k-means start at most (the ECSQ iterations stop
            at a fixed point or after :data:`ECSQ_MAX_ITER`).

    Returns:
        A :class:`Quantized` (method ``"ecsq"``) with a sorted, duplicate-free float32
        codebook and ``codes`` (``-1`` exactly at the zeros: the mask is kept).

    Raises:
        ConfigError: bad ``bits`` or ``rate_lambda``.

    Example:
        >>> w = torch.tensor([-1.0, -0.9, 0.0, 0.1, 0.12, 0.11, 0.09, 0.5, 0.45, 0.08])
        >>> quantize_ecsq(w, bits=2, rate_lambda=0.0).codebook.numel()  # k-means
        3
        >>> quantize_ecsq(w, bits=2, rate_lambda=0.05).codebook.numel()  # a rare level merges
        2
    """
    bits = check_bits(bits)
    lam = check_rate_lambda(rate_lambda)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    start = quantize_kmeans(weight, bits, mask=mask, max_iter=max_iter)
    w = check_weight(weight, mask)
    nonzero = w != 0
    nz = w[nonzero].numpy().astype(np.float64)
    if lam == 0 or np.unique(nz).size <= (1 << bits):
        # k-means, or a layer already on few enough values (kept exactly: idempotent)
        return Quantized("ecsq", bits, start.codes, start.codebook, None, start.dequantized)
    if importance is None:
        order = np.argsort(nz, kind="stable")
        edges = _ecsq_1d(nz[order], start.codebook.numpy(), lam, CODEBOOK_ENTRY_BITS)
        assign = np.empty(nz.size, dtype=np.int64)
        assign[order] = np.repeat(np.arange(edges.size - 1), np.diff(edges))
        h = np.ones_like(nz)
    else:
        h = _check_importance(importance, w.shape)[nonzero.numpy().ravel()]
        assign = _ecsq_weighted(nz, h, start.codebook.numpy(), lam, CODEBOOK_ENTRY_BITS)
    means = np.bincount(assign, weights=h * nz) / np.bincount(assign, weights=h)
    means32 = means.astype(np.float32)
    for m in np.flatnonzero(means32 == 0):
        # zero means "pruned" in a file: a level on 0.0 would drop its weights from the
        # mask, so it sits on its member nearest to zero instead
        members = nz[assign == m]
        means32[m] = np.float32(members[np.argmin(np.abs(members))])
    # Two means that round to the same float32 become one level.
    book, idx = np.unique(means32, return_inverse=True)
    codes = torch.full(w.shape, -1, dtype=torch.int64)
    codes[nonzero] = torch.from_numpy(idx[assign].astype(np.int64))
    codebook = torch.from_numpy(book.copy())
    return Quantized("ecsq", bits, codes, codebook, None, dequantize(codes, codebook))
