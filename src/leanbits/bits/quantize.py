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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from leanbits.bits.entropy import choose_precision, coder_code_lengths
from leanbits.errors import ConfigError

MIN_BITS, MAX_BITS = 1, 16
#: ``rate_lambda`` of ``ecsq`` when none is given (relative squared error per coded bit)
DEFAULT_RATE_LAMBDA = 0.02
#: ECSQ iterations at most (each costs O(levels x log weights), so this bounds the time)
ECSQ_MAX_ITER = 1000
#: ECSQ iterations at most with an importance per weight (each costs O(levels x weights))
ECSQ_WEIGHTED_MAX_ITER = 200
#: bits of one codebook entry in a ``.lbits`` file (a float32), part of ECSQ's rate
CODEBOOK_ENTRY_BITS = 32


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


def _check_rate_lambda(lam: float) -> float:
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
    lam = _check_rate_lambda(rate_lambda)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    start = quantize_kmeans(weight, bits, mask=mask, max_iter=max_iter)
    w = _check_weight(weight, mask)
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
        _check_rate_lambda(rate_lambda)


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
