"""Accuracy-vs-bits frontiers: pure functions on plain numbers (no torch).

A *point* is a ``(bits, accuracy)`` pair; fewer bits and higher accuracy are better. The
*frontier* (Pareto set) holds the points no other point beats on both at once. Read as a
step function it answers the two questions the paper's claim 5 asks:

* the fewest bits that reached an accuracy level (:func:`bits_for_accuracy`), and
* the best accuracy reached within a bit budget (:func:`accuracy_within_bits`).

Both are exact on the measured points: between two frontier points nothing is interpolated
linearly, because no configuration was measured there. :func:`compare` puts two groups'
frontiers (e.g. two heads) side by side at equal accuracy and at equal bits.

Points whose bits or accuracy are missing (``None``) or NaN are ignored everywhere.

Example:
    >>> pts = [(100, 0.90), (50, 0.95), (200, 0.97), (60, 0.93)]
    >>> pareto_front(pts)
    [1, 2]
    >>> bits_for_accuracy(pts, 0.96)
    2
    >>> accuracy_within_bits(pts, 120)
    1
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Point = tuple[float | None, float | None]


def _valid(p: Point) -> bool:
    bits, acc = p
    return (bits is not None and acc is not None
            and not (isinstance(bits, float) and math.isnan(bits))
            and not (isinstance(acc, float) and math.isnan(acc)))


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the Pareto-optimal points, fewest bits first.

    A point is on the front when no other point has ``bits <=`` and ``accuracy >=`` with at
    least one strict. Of several identical points only the first is kept, so along the
    returned order bits strictly increase and accuracy strictly increases.

    Args:
        points: ``(total_bits, accuracy)`` pairs.

    Returns:
        Indices into ``points``.
    """
    order = sorted((i for i, p in enumerate(points) if _valid(p)),
                   key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -math.inf
    for i in order:
        # Sorted by bits, then accuracy descending: a point is optimal exactly when it is
        # more accurate than everything with fewer (or equal) bits seen so far.
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def bits_for_accuracy(points: Sequence[Point], level: float) -> int | None:
    """Index of the point with the fewest bits whose accuracy is at least ``level``.

    Ties in bits go to the more accurate point, then to the earlier one.

    Args:
        points: ``(total_bits, accuracy)`` pairs.
        level: the accuracy to reach.

    Returns:
        An index into ``points``, or None when no point reaches ``level``.
    """
    ok = [i for i, p in enumerate(points) if _valid(p) and p[1] >= level]
    if not ok:
        return None
    return min(ok, key=lambda i: (points[i][0], -points[i][1], i))


def accuracy_within_bits(points: Sequence[Point], budget: float) -> int | None:
    """Index of the most accurate point using at most ``budget`` bits.

    Ties in accuracy go to the point with fewer bits, then to the earlier one.

    Args:
        points: ``(total_bits, accuracy)`` pairs.
        budget: the bit budget.

    Returns:
        An index into ``points``, or None when every point needs more than ``budget``.
    """
    ok = [i for i, p in enumerate(points) if _valid(p) and p[0] <= budget]
    if not ok:
        return None
    return min(ok, key=lambda i: (-points[i][1], points[i][0], i))


def min_bits_table(
    rows: Sequence[Mapping[str, Any]], levels: Iterable[float],
    bits_key: str = "total_bits", acc_key: str = "test_acc",
) -> list[dict[str, Any]]:
    """For each accuracy level, the fewest bits that reached it and the row that did.

    Args:
        rows: result rows (dicts).
        levels: accuracy levels, e.g. ``[0.95, 0.98, 0.99]``.
        bits_key: key of the bit count in a row.
        acc_key: key of the accuracy in a row.

    Returns:
        One dict per level: ``{"level", "bits", "accuracy", "row"}``; ``bits``,
        ``accuracy`` and ``row`` are None when no row reached the level.
    """
    pts = points_of(rows, bits_key, acc_key)
    out = []
    for level in levels:
        i = bits_for_accuracy(pts, level)
        out.append({"level": level, "bits": None if i is None else pts[i][0],
                    "accuracy": None if i is None else pts[i][1],
                    "row": None if i is None else rows[i]})
    return out


def points_of(rows: Sequence[Mapping[str, Any]], bits_key: str = "total_bits",
              acc_key: str = "test_acc") -> list[Point]:
    """``(bits, accuracy)`` of each row (None where a row lacks one)."""
    return [(r.get(bits_key), r.get(acc_key)) for r in rows]


def group_by(rows: Sequence[Mapping[str, Any]],
             key: str | Callable[[Mapping[str, Any]], Any]) -> dict[Any, list[Mapping[str, Any]]]:
    """Split rows into groups, in first-seen order.

    Args:
        rows: result rows.
        key: a function of a row, or the name of an axis (looked up in ``row["axes"]``,
            then in the row itself).

    Returns:
        ``{group value: [rows]}``.
    """
    def get(r: Mapping[str, Any]) -> Any:
        if callable(key):
            return key(r)
        axes = r.get("axes") or {}
        return axes[key] if key in axes else r.get(key)

    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(get(r), []).append(r)
    return groups


def compare(
    a: Sequence[Point], b: Sequence[Point],
    accuracy_levels: Iterable[float] | None = None,
    bit_budgets: Iterable[float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Compare two groups by their frontiers: bits at equal accuracy, accuracy at equal bits.

    Args:
        a: the first group's ``(bits, accuracy)`` points.
        b: the second group's points.
        accuracy_levels: where to compare bits (default: every accuracy on either
            frontier - the step functions change only there).
        bit_budgets: where to compare accuracy (default: every bit count on either
            frontier).

    Returns:
        ``{"at_accuracy": [{"accuracy", "bits_a", "bits_b", "ratio"}],
        "at_bits": [{"bits", "accuracy_a", "accuracy_b", "difference"}]}`` where
        ``ratio = bits_a / bits_b`` and ``difference = accuracy_a - accuracy_b``; a side
        that never reaches the level (or fits the budget) has None, and so has the
        ratio/difference.

    Example:
        >>> c = compare([(10, 0.9), (20, 0.95)], [(15, 0.9)], [0.9], [12])
        >>> c["at_accuracy"][0]["ratio"], c["at_bits"][0]["accuracy_b"]
        (0.6666666666666666, None)
    """
    fa = [a[i] for i in pareto_front(a)]
    fb = [b[i] for i in pareto_front(b)]
    if accuracy_levels is None:
        accuracy_levels = sorted({p[1] for p in fa + fb})
    if bit_budgets is None:
        bit_budgets = sorted({p[0] for p in fa + fb})
    at_acc = []
    for level in accuracy_levels:
        ia, ib = bits_for_accuracy(fa, level), bits_for_accuracy(fb, level)
        ba = None if ia is None else fa[ia][0]
        bb = None if ib is None else fb[ib][0]
        ratio = ba / bb if ba is not None and bb else None
        at_acc.append({"accuracy": level, "bits_a": ba, "bits_b": bb, "ratio": ratio})
    at_bits = []
    for budget in bit_budgets:
        ia, ib = accuracy_within_bits(fa, budget), accuracy_within_bits(fb, budget)
        aa = None if ia is None else fa[ia][1]
        ab = None if ib is None else fb[ib][1]
        diff = aa - ab if aa is not None and ab is not None else None
        at_bits.append({"bits": budget, "accuracy_a": aa, "accuracy_b": ab, "difference": diff})
    return {"at_accuracy": at_acc, "at_bits": at_bits}
