"""Picking the one packed model a run keeps: the ``[pick]`` table of an experiment file.

A sweep measures many packed versions of a model; a user wants one file. The rule is the
demo's: among the grid points that have a packed model, the fewest total bits whose
validation accuracy lost at most ``max_drop`` against the model it was quantized from (the
pruned model, or the trained one when nothing was pruned). When no point qualifies, the
point with the best validation accuracy. The run copies that point's ``model.lbits`` to
``RUN/model.lbits`` and names the point in ``results.json`` (``"picked"``).

Example:
    >>> from leanbits.results import Row
    >>> rows = [Row(point=i, stages={"train": "t", "bits": f"b{i}"}, val_acc=a,
    ...             total_bits=b, metrics={"train": {"val_acc": 0.98}})
    ...         for i, (a, b) in enumerate([(0.970, 100), (0.979, 200), (0.981, 300)])]
    >>> pick_point(rows, max_drop=0.001)
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leanbits.config import option
from leanbits.results import Row


@dataclass(frozen=True)
class PickConfig:
    """Which grid point's packed model a run keeps (``[pick]`` in an experiment file)."""

    max_drop: float = option(
        0.0, "validation accuracy a packed model may lose against the model it was "
        "quantized from (the fewest-bit point within it is kept)", minimum=0.0, maximum=1.0)


def reference_accuracy(row: Row) -> float | None:
    """Validation accuracy of the model a row's bits stage quantized (its input stage)."""
    before = "prune" if "prune" in row.stages else "train"
    return row.metrics.get(before, {}).get("val_acc")


def pick_point(rows: Sequence[Row], max_drop: float) -> int | None:
    """Index of the row to keep (see the module docstring).

    Args:
        rows: result rows of a run.
        max_drop: allowed validation accuracy loss against the quantized model's input.

    Returns:
        An index into ``rows``, or None when no row has a packed model.
    """
    packed = [i for i, r in enumerate(rows) if "bits" in r.stages and r.total_bits
              and r.val_acc is not None]
    keep = []
    for i in packed:
        ref = reference_accuracy(rows[i])
        if ref is not None and rows[i].val_acc >= ref - max_drop:
            keep.append(i)
    if keep:
        return min(keep, key=lambda i: rows[i].total_bits)
    return max(packed, key=lambda i: rows[i].val_acc) if packed else None
