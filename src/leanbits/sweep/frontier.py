"""Accuracy-vs-bits frontiers: pure functions on plain numbers (no torch).

A *point* is a ``(bits, accuracy)`` pair; fewer bits and higher accuracy are better. The
*frontier* (Pareto set) holds the points no other point beats on both at once. Read as a
step function it answers the two questions the paper's claim 5 asks:

* the fewest bits that reached an accuracy level (:func:`bits_for_accuracy`), and
* the best accuracy reached within a bit budget (:func:`accuracy_within_bits`).

Both are exact on the measured points: between two frontier points nothing is interpolated
linearly, because no configuration was measured there.

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
from collections.abc import Iterable, Sequence
from typing import Any

from leanbits.results import Row

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
    rows: Sequence[Row], levels: Iterable[float],
    bits_key: str = "total_bits", acc_key: str = "val_acc",
) -> list[dict[str, Any]]:
    """For each accuracy level, the fewest bits that reached it and the row that did.

    The choice is made on ``acc_key``, validation accuracy unless asked otherwise: test
    accuracy is read once, for the chosen row (``test_acc``), and never decides which
    row that is. Choosing on test would make the reported test accuracy optimistic.

    Args:
        rows: result rows.
        levels: accuracy levels, e.g. ``[0.95, 0.98, 0.99]``.
        bits_key: key of the bit count in a row.
        acc_key: key of the accuracy the levels apply to.

    Returns:
        One dict per level: ``{"level", "bits", "accuracy", "test_acc", "row"}``
        (``accuracy``: the chosen row's ``acc_key``); all but ``level`` are None when no
        row reached the level.
    """
    pts = points_of(rows, bits_key, acc_key)
    out = []
    for level in levels:
        i = bits_for_accuracy(pts, level)
        out.append({"level": level, "bits": None if i is None else pts[i][0],
                    "accuracy": None if i is None else pts[i][1],
                    "test_acc": None if i is None else rows[i].test_acc,
                    "row": None if i is None else rows[i]})
    return out


def points_of(rows: Sequence[Row], bits_key: str = "total_bits",
              acc_key: str = "val_acc") -> list[Point]:
    """``(bits, accuracy)`` of each row (None where a row lacks one)."""
    return [(getattr(r, bits_key), getattr(r, acc_key)) for r in rows]
